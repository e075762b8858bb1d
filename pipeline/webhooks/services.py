"""Every write of webhooks: subscriptions (create, change, rotate the secret, delete) and events.

An event is emitted for the subscriptions that asked for its type and whose owner may see its record at that moment
(`visible_*` selectors, SPEC §2; an admin's subscription therefore covers the whole company). The event row and its
deliveries are written set-based in one transaction, and the sending tasks are queued once it commits. If queuing
fails (Redis away), the deliveries stay due and the periodic sweep sends them.
"""

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from accounts.models import User
from config.services import apply_fields
from pipeline.webhooks import signing
from pipeline.webhooks.models import (
    TEST_EVENT_TYPE,
    DeliveryStatus,
    EventType,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from pipeline.webhooks.safety import UnsafeWebhookUrl, check_webhook_url
from pipeline.webhooks.selectors import visible_events

logger = logging.getLogger(__name__)

SUBSCRIPTION_EDITABLE_FIELDS = frozenset({"url", "description", "events", "is_active"})


@dataclass(frozen=True)
class ReplayResult:
    """What a replay queued: `queued` deliveries up to event `last_sequence`; `complete` false when more events
    match than one replay sends (replay again with `after=last_sequence`)."""

    queued: int
    last_sequence: int | None
    complete: bool


# --- Subscriptions ------------------------------------------------------------------------------------------------


def _check_url(url: str) -> None:
    try:
        check_webhook_url(url)
    except UnsafeWebhookUrl as error:
        raise ValidationError({"url": str(error)}) from error


def _check_events(events: Iterable[str]) -> list[str]:
    events = list(dict.fromkeys(events))
    if not events:
        raise ValidationError({"events": "Name at least one event type."})
    unknown = [name for name in events if name not in EventType.values]
    if unknown:
        raise ValidationError({"events": f"Unknown event types: {', '.join(unknown)}."})
    return events


@transaction.atomic
def create_subscription(
    *, owner: User, url: str, events: Iterable[str], description: str = "", is_active: bool = True
) -> WebhookSubscription:
    """Subscribe `url` to `events` for `owner`, with a new secret; the URL must pass the outbound checks.

    A user has at most `WEBHOOK_MAX_SUBSCRIPTIONS_PER_USER`: each event is fanned out to every subscription in the
    request that wrote it, so their number must stay small.
    """
    existing = WebhookSubscription.objects.select_for_update().filter(owner=owner)
    if len(existing) >= settings.WEBHOOK_MAX_SUBSCRIPTIONS_PER_USER:
        raise ValidationError(
            f"You have {settings.WEBHOOK_MAX_SUBSCRIPTIONS_PER_USER} webhook subscriptions, the most allowed; "
            "delete one, or subscribe one URL to more event types."
        )
    _check_url(url)
    subscription = WebhookSubscription(
        owner=owner,
        url=url,
        events=_check_events(events),
        description=description,
        is_active=is_active,
        secret=signing.new_secret(),
    )
    subscription.full_clean(exclude=["owner"])
    subscription.save()
    return subscription


@transaction.atomic
def update_subscription(*, subscription: WebhookSubscription, **fields: Any) -> WebhookSubscription:
    """Change a subscription; switching it back on clears the reason it was disabled and its failure streak."""
    if set(fields) <= SUBSCRIPTION_EDITABLE_FIELDS:  # otherwise apply_fields names the fields refused
        if "url" in fields and fields["url"] != subscription.url:
            _check_url(fields["url"])
        if "events" in fields:
            fields["events"] = _check_events(fields["events"])
    re_enabled = fields.get("is_active") and not subscription.is_active

    def check(changed: list[str]) -> None:
        if re_enabled:
            subscription.disabled_at, subscription.disabled_reason, subscription.consecutive_failures = None, "", 0
        subscription.full_clean(exclude=["owner"])

    apply_fields(subscription, fields, SUBSCRIPTION_EDITABLE_FIELDS, before_save=check)
    return subscription


@transaction.atomic
def rotate_secret(*, subscription: WebhookSubscription) -> WebhookSubscription:
    """Give the subscription a new secret; the old one also signs for `WEBHOOK_SECRET_ROTATION_GRACE_SECONDS`."""
    subscription.previous_secret = subscription.secret
    subscription.previous_secret_expires_at = timezone.now() + timedelta(
        seconds=settings.WEBHOOK_SECRET_ROTATION_GRACE_SECONDS
    )
    subscription.secret = signing.new_secret()
    subscription.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"])
    return subscription


@transaction.atomic
def delete_subscription(*, subscription: WebhookSubscription) -> None:
    """Remove a subscription and its delivery log; deliveries not yet sent are dropped with it."""
    subscription.delete()


# --- Events -------------------------------------------------------------------------------------------------------


def _json_ready(data: Any) -> Any:
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def _queue_deliveries(delivery_ids: list[int]) -> None:
    from pipeline.webhooks.tasks import send_delivery

    try:
        for delivery_id in delivery_ids:
            send_delivery.delay(delivery_id)
    except Exception:  # noqa: BLE001 - the broker is away; the deliveries stay due and the sweep sends them
        logger.warning("could not queue %d webhook deliveries; the periodic sweep will send them", len(delivery_ids))


def _create_event(
    *, type: str, data: Any, subscriptions: list[WebhookSubscription], record_owners: list[int] | None = None
) -> WebhookEvent:
    if not subscriptions:  # one INSERT, which needs no transaction of its own
        return WebhookEvent.objects.create(type=type, data=_json_ready(data), record_owners=record_owners)
    with transaction.atomic():
        event = WebhookEvent.objects.create(type=type, data=_json_ready(data), record_owners=record_owners)
        now = timezone.now()
        deliveries = WebhookDelivery.objects.bulk_create(
            WebhookDelivery(subscription=subscription, event=event, next_attempt_at=now)
            for subscription in subscriptions
        )
        delivery_ids = [delivery.pk for delivery in deliveries]
        transaction.on_commit(lambda: _queue_deliveries(delivery_ids))
    return event


def emit_event(
    *,
    type: str,
    data: Callable[[], Any],
    record: models.Model | None = None,
    visible_to: Callable[[User], QuerySet] | None = None,
    record_owners: Iterable[int | None] | None = None,
) -> WebhookEvent:
    """Write event `type` and one delivery per active subscription to it whose (active) owner may see `record`.

    `visible_to` is the `visible_*` selector of `record`'s kind; without a record the event goes to every
    subscription of its type. `record_owners` are the owners of `record` (an activity's, and its deal's or lead's),
    by whom the event list decides who may see the event; None for an event about no record, which everybody may
    see. The event is written even when no subscription receives it: the event list serves it to whoever may see it.
    """
    subscriptions = list(
        WebhookSubscription.objects.filter(
            is_active=True, owner__is_active=True, events__contains=[type]
        ).select_related("owner")
    )
    if record is not None and visible_to is not None and subscriptions:
        owners = {subscription.owner for subscription in subscriptions}
        seeing = {owner.pk for owner in owners if visible_to(owner).filter(pk=record.pk).exists()}
        subscriptions = [subscription for subscription in subscriptions if subscription.owner_id in seeing]
    owners = None if record_owners is None else sorted({owner for owner in record_owners if owner is not None})
    return _create_event(type=type, data=data(), subscriptions=subscriptions, record_owners=owners)


def emit_record_events(
    events: Sequence[tuple[str, models.Model]],
    *,
    represent: Callable[[list[models.Model]], list[Any]],
    visible_to: Callable[[User], QuerySet],
    record_owners: Callable[[models.Model], Iterable[int | None]],
) -> list[WebhookEvent]:
    """Write the events `(type, record)` of many records of one kind, in order, as `emit_event` writes one each:
    the same rows, with a delivery per active subscription to the type whose (active) owner may see the record.

    Set-based, so that a batch of 200 deals costs a constant number of statements, not three per event: the
    subscriptions are read once, what each subscriber may see once per subscriber, the records are represented
    by `represent` (one serializer for the list) and the events and deliveries inserted in bulk.
    """
    if not events:
        return []
    types = sorted({type for type, _record in events})
    subscriptions = list(
        WebhookSubscription.objects.filter(is_active=True, owner__is_active=True, events__overlap=types).select_related(
            "owner"
        )
    )
    record_ids = {record.pk for _type, record in events}
    seeing = {
        owner.pk: set(visible_to(owner).filter(pk__in=record_ids).values_list("pk", flat=True))
        for owner in {subscription.owner for subscription in subscriptions}
    }
    data = _json_ready(represent([record for _type, record in events]))
    rows = [
        WebhookEvent(
            type=type,
            data=datum,
            record_owners=sorted({owner for owner in record_owners(record) if owner is not None}),
        )
        for (type, record), datum in zip(events, data, strict=True)
    ]
    if not subscriptions:  # one INSERT, which needs no transaction of its own
        return WebhookEvent.objects.bulk_create(rows)
    with transaction.atomic():
        created = WebhookEvent.objects.bulk_create(rows)
        now = timezone.now()
        deliveries = WebhookDelivery.objects.bulk_create(
            WebhookDelivery(subscription=subscription, event=event, next_attempt_at=now)
            for event, (type, record) in zip(created, events, strict=True)
            for subscription in subscriptions
            if type in subscription.events and record.pk in seeing[subscription.owner_id]
        )
        delivery_ids = [delivery.pk for delivery in deliveries]
        if delivery_ids:
            transaction.on_commit(lambda: _queue_deliveries(delivery_ids))
    return created


def emit_metrics_recomputed(*, computed_at: datetime, periods: Iterable[str] = (), full: bool = False) -> WebhookEvent:
    """Tell `metrics.recomputed` subscribers that fresh metrics are readable (for the metrics engine to call).

    The payload names only what was recomputed (`computed_at`, the periods, whether it was a full recompute), no
    numbers, so every subscriber may receive it; they read the figures they may see through the metrics API. Call it
    inside the recompute's transaction: the event then exists, and is sent, only if the recompute commits.
    """
    data = {"computed_at": computed_at, "periods": list(periods), "full": full}
    return emit_event(type=EventType.METRICS_RECOMPUTED, data=lambda: data)


@transaction.atomic
def prune_delivery_log(*, older_than: datetime) -> int:
    """Delete finished deliveries created before `older_than`; their events stay for the event list (`prune_events`).

    Deliveries still pending or retrying are kept whatever their age. Returns the number of deliveries deleted.
    """
    finished = WebhookDelivery.objects.filter(
        created_at__lt=older_than, status__in=[DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED]
    )
    deleted, _ = finished.delete()
    return deleted


@transaction.atomic
def prune_events(*, older_than: datetime) -> int:
    """Delete the events created before `older_than` that no delivery refers to any more (one still in the log keeps
    its event). Returns the number of events deleted."""
    old = WebhookEvent.objects.filter(created_at__lt=older_than).exclude(
        Exists(WebhookDelivery.objects.filter(event=OuterRef("pk")))
    )
    deleted, _ = old.delete()
    return deleted


# --- Replay -------------------------------------------------------------------------------------------------------


@transaction.atomic
def replay_events(
    *, subscription: WebhookSubscription, after: int | None = None, since: datetime | None = None
) -> ReplayResult:
    """Deliver again to `subscription` the events of its types its owner may see, from the event list, after event
    `after` (a `sequence`) or created at or after `since`; at most `WEBHOOK_REPLAY_MAX_EVENTS`, oldest first.

    Each event keeps its id and body; each attempt is signed afresh. An event the subscription already had a
    delivery of gets that delivery back as pending (its attempts counted anew), others get a new one; the sending
    tasks are queued once this commits, as for new events.
    """
    if (after is None) == (since is None):
        raise ValidationError({"after": "Give either `after` (an event's sequence) or `since` (a time), not both."})
    if not subscription.is_active:
        raise ValidationError({"is_active": "The subscription is disabled: switch it back on before a replay."})
    events = visible_events(user=subscription.owner, types=subscription.events)
    events = events.filter(sequence__gt=after) if after is not None else events.filter(created_at__gte=since)
    limit = settings.WEBHOOK_REPLAY_MAX_EVENTS
    chosen = list(events.order_by("sequence").values_list("pk", "sequence")[: limit + 1])
    complete = len(chosen) <= limit
    chosen = chosen[:limit]
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(subscription=subscription, event_id=event_id, next_attempt_at=now) for event_id, _ in chosen],
        update_conflicts=True,
        unique_fields=["subscription", "event"],
        update_fields=[
            "created_at",
            "status",
            "attempts",
            "next_attempt_at",
            "last_error",
            "response_status",
            "latency_ms",
            "response_body_prefix",
            "delivered_at",
        ],
    )
    delivery_ids = [delivery.pk for delivery in deliveries]
    if delivery_ids:
        transaction.on_commit(lambda: _queue_deliveries(delivery_ids))
    return ReplayResult(queued=len(delivery_ids), last_sequence=chosen[-1][1] if chosen else None, complete=complete)


def send_test_event(*, subscription: WebhookSubscription) -> WebhookDelivery:
    """Queue one `webhook.test` event to `subscription` (even a disabled one); tried once, shown in its log."""
    data = {"subscription": subscription.pk, "message": "A test event sent from the webhook's test action."}
    event = _create_event(type=TEST_EVENT_TYPE, data=data, subscriptions=[subscription])
    return event.deliveries.get()
