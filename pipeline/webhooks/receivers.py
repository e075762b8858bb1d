"""The domain events of `pipeline.signals` (sent after commit) as webhook events, with the record as the API shows it.

Connected in `PipelineConfig.ready`. A stage change into a won or lost stage is also `deal.won` / `deal.lost`.
"""

from django.dispatch import receiver

from config.api import list_representation
from config.coalescing import gather
from pipeline import selectors, signals
from pipeline.api.serializers import ActivitySerializer, DealSerializer, LeadSerializer
from pipeline.models import StageKind
from pipeline.webhooks.models import EventType
from pipeline.webhooks.services import emit_event, emit_record_events


def _emit_deal(type: str, deal) -> None:
    # Gathered: the events of a batch of deals are written together after its commit (`config.coalescing`).
    gather("webhooks.deal_events", (type, deal), _emit_deal_events)


def _represent_deals(deals: list) -> list:
    # Compiled once (`config.api.list_representation`, the API lists' own): DRF's per-field machinery took 2 ms a
    # deal, most of the events' cost for a batch of 200.
    represent = list_representation(DealSerializer)
    if represent is None:
        return DealSerializer(deals, many=True).data
    return [represent(deal) for deal in deals]


def _emit_deal_events(events: list) -> None:
    emit_record_events(
        events,
        represent=_represent_deals,
        visible_to=selectors.visible_deals,
        record_owners=lambda deal: [deal.owner_id],
    )


@receiver(signals.deal_created, dispatch_uid="webhooks.deal_created")
def deal_created(sender, *, deal, **kwargs) -> None:
    _emit_deal(EventType.DEAL_CREATED, deal)


@receiver(signals.deal_updated, dispatch_uid="webhooks.deal_updated")
def deal_updated(sender, *, deal, **kwargs) -> None:
    _emit_deal(EventType.DEAL_UPDATED, deal)


@receiver(signals.deal_stage_changed, dispatch_uid="webhooks.deal_stage_changed")
def deal_stage_changed(sender, *, deal, stage_change, **kwargs) -> None:
    _emit_deal(EventType.DEAL_STAGE_CHANGED, deal)
    if stage_change.to_stage.kind == StageKind.WON:
        _emit_deal(EventType.DEAL_WON, deal)
    elif stage_change.to_stage.kind == StageKind.LOST:
        _emit_deal(EventType.DEAL_LOST, deal)


@receiver(signals.lead_created, dispatch_uid="webhooks.lead_created")
def lead_created(sender, *, lead, **kwargs) -> None:
    emit_event(
        type=EventType.LEAD_CREATED,
        data=lambda: LeadSerializer(lead).data,
        record=lead,
        visible_to=selectors.visible_leads,
        record_owners=[lead.owner_id],
    )


@receiver(signals.lead_converted, dispatch_uid="webhooks.lead_converted")
def lead_converted(sender, *, lead, deal, **kwargs) -> None:
    emit_event(
        type=EventType.LEAD_CONVERTED,
        data=lambda: LeadSerializer(lead).data,
        record=lead,
        visible_to=selectors.visible_leads,
        record_owners=[lead.owner_id],
    )


@receiver(signals.activity_logged, dispatch_uid="webhooks.activity_logged")
def activity_logged(sender, *, activity, **kwargs) -> None:
    emit_event(
        type=EventType.ACTIVITY_CREATED,
        data=lambda: ActivitySerializer(activity).data,
        record=activity,
        visible_to=selectors.visible_activities,
        # Who sees an activity (selectors.visible_activities): its owner's, its deal's and its lead's viewers.
        record_owners=[
            activity.owner_id,
            activity.deal.owner_id if activity.deal_id else None,
            activity.lead.owner_id if activity.lead_id else None,
        ],
    )
