"""Queue a debounced metrics recompute after every committed change to deals, leads and activities.

`pipeline.signals` are sent after commit (see `pipeline.services`), so a recompute never sees a rolled-back write.
"""

from typing import Any

from django.conf import settings

from forecasting import services
from pipeline import signals

CHANGE_SIGNALS = [
    signals.deal_created,
    signals.deal_updated,
    signals.deal_stage_changed,
    signals.lead_created,
    signals.lead_status_changed,
    signals.lead_converted,
    signals.activity_logged,
    signals.activity_completed,
    signals.records_imported,
]


def queue_recompute(sender: Any, **kwargs: Any) -> None:
    if settings.METRICS_RECOMPUTE_ON_CHANGE:
        services.request_recompute()


def connect() -> None:
    for signal in CHANGE_SIGNALS:
        signal.connect(queue_recompute, dispatch_uid=f"forecasting-recompute-{id(signal)}")
