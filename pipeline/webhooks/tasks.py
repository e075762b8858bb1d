"""Celery entry points of webhooks: thin and idempotent (a delivery that is not due is left alone)."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from pipeline.webhooks.models import DeliveryStatus, WebhookDelivery
from pipeline.webhooks.sending import OPEN_STATUSES, attempt_delivery
from pipeline.webhooks.services import prune_delivery_log, prune_events

SWEEP_BATCH = 1000


# Timeouts bound each read, not the whole answer: a receiver trickling its headers a byte at a time is cut off here
# (the attempt is then recorded as failed, and retried). Far above the default connect + read timeouts.
ATTEMPT_TIME_LIMIT_SECONDS = 30


@shared_task(
    name="pipeline.webhooks.send_delivery",
    ignore_result=True,
    soft_time_limit=ATTEMPT_TIME_LIMIT_SECONDS,
    time_limit=ATTEMPT_TIME_LIMIT_SECONDS + 15,
)
def send_delivery(delivery_id: int) -> None:
    """Attempt the delivery; if it must be retried, queue the next attempt for when it is due."""
    delivery = attempt_delivery(delivery_id=delivery_id)
    if delivery is not None and delivery.status == DeliveryStatus.RETRYING:
        countdown = max(0.0, (delivery.next_attempt_at - timezone.now()).total_seconds())
        send_delivery.apply_async((delivery_id,), countdown=countdown)


@shared_task(name="pipeline.webhooks.send_due_deliveries", ignore_result=True)
def send_due_deliveries() -> int:
    """Queue every delivery that is due, the safety net for tasks lost on the way (Redis down, worker killed)."""
    due = WebhookDelivery.objects.filter(status__in=OPEN_STATUSES, next_attempt_at__lte=timezone.now())
    delivery_ids = list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:SWEEP_BATCH])
    for delivery_id in delivery_ids:
        send_delivery.delay(delivery_id)
    return len(delivery_ids)


@shared_task(name="pipeline.webhooks.prune_delivery_log", ignore_result=True)
def prune_old_deliveries() -> int:
    """Keep the delivery log for `WEBHOOK_LOG_RETENTION_DAYS`."""
    return prune_delivery_log(older_than=timezone.now() - timedelta(days=settings.WEBHOOK_LOG_RETENTION_DAYS))


@shared_task(name="pipeline.webhooks.prune_events", ignore_result=True)
def prune_old_events() -> int:
    """Keep the event list for `EVENT_RETENTION_DAYS` (an event still in the delivery log stays with it)."""
    return prune_events(older_than=timezone.now() - timedelta(days=settings.EVENT_RETENTION_DAYS))
