"""Queue a metrics refresh (deals, activities) or a debounced full recompute (leads, imports, team membership)
after each change.

`pipeline.signals` and `accounts.signals` are sent after commit (see `pipeline.services`, `accounts.services`), so
a recompute never sees a rolled-back write.
"""

from typing import Any

from django.conf import settings

from accounts import signals as accounts_signals
from config.coalescing import once
from forecasting import services
from pipeline import signals

# Deals and activities: their changes wait in PostgreSQL (forecasting.changes) for an incremental refresh.
REFRESH_SIGNALS = [
    signals.deal_created,
    signals.deal_updated,
    signals.deal_stage_changed,
    signals.activity_logged,
    signals.activity_completed,
]
# Leads, imports and the configuration: a refresh does not cover them (lead metrics; imports write in bulk; a stage's
# probability or rotting days, or a member moving, changes numbers of every period), a full recompute does. (Quotas
# are forecasting's own: its services queue the recompute. A refresh meanwhile gives way to it:
# forecasting.configuration.)
RECOMPUTE_SIGNALS = [
    signals.lead_created,
    signals.lead_status_changed,
    signals.lead_converted,
    signals.records_imported,
    signals.configuration_changed,
    accounts_signals.team_membership_changed,
]


# Asked once per change; a batch of changes committed together (config.api's batch upserts) asks once in all
# (config.coalescing).
def queue_refresh(sender: Any, **kwargs: Any) -> None:
    if settings.METRICS_RECOMPUTE_ON_CHANGE:
        once("metrics-refresh", lambda: services.request_refresh())


def queue_recompute(sender: Any, **kwargs: Any) -> None:
    if settings.METRICS_RECOMPUTE_ON_CHANGE:
        once("metrics-recompute", lambda: services.request_recompute())


def connect() -> None:
    for signal in REFRESH_SIGNALS:
        signal.connect(queue_refresh, dispatch_uid=f"forecasting-refresh-{id(signal)}")
    for signal in RECOMPUTE_SIGNALS:
        signal.connect(queue_recompute, dispatch_uid=f"forecasting-recompute-{id(signal)}")
