"""Webhook subscriptions, the events they receive and the deliveries of those events.

An event is written once, with a stable UUID, a `sequence` number (the order of the event list) and the record as
the API shows it, whether or not anybody subscribes to it (the event list serves it for `EVENT_RETENTION_DAYS`); each
subscription that may see the record gets one delivery of it, so a retry re-sends the same event id (at-least-once
delivery, de-duplicated by the receiver on `id`).
"""

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Func, Q, Value


class EventType(models.TextChoices):
    DEAL_CREATED = "deal.created", "A deal was created"
    DEAL_UPDATED = "deal.updated", "A deal's fields changed"
    DEAL_STAGE_CHANGED = "deal.stage_changed", "A deal moved to another stage"
    DEAL_WON = "deal.won", "A deal was won"
    DEAL_LOST = "deal.lost", "A deal was lost"
    LEAD_CREATED = "lead.created", "A lead was created"
    LEAD_CONVERTED = "lead.converted", "A lead was converted into a deal"
    ACTIVITY_CREATED = "activity.created", "An activity was logged or planned"
    METRICS_RECOMPUTED = "metrics.recomputed", "The metrics were recomputed"
    FORECAST_SUBMITTED = "forecast.submitted", "A forecast call number was submitted"
    FORECAST_ADJUSTED = "forecast.adjusted", "A forecast call number was adjusted"


# Sent only by the "send test event" action, to the one subscription tested; nobody subscribes to it.
TEST_EVENT_TYPE = "webhook.test"


class WebhookSubscription(models.Model):
    """A URL of `owner` that receives the events it names, limited to the records `owner` may see (SPEC §2).

    `secret` signs every delivery; it is kept in clear because HMAC needs it, and shown only when created or
    rotated. After a rotation the previous secret also signs deliveries until `previous_secret_expires_at`, so a
    receiver can switch without losing events. A subscription that keeps failing is switched off (`is_active`
    false) with `disabled_at` and `disabled_reason` saying why.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_subscriptions")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    events = ArrayField(models.CharField(max_length=40, choices=EventType.choices))
    secret = models.CharField(max_length=100)
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.TextField(blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(events__len__gt=0), name="webhook_subscription_has_events"),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.owner})"


# The PostgreSQL sequence numbering events (created by the migration that added `WebhookEvent.sequence`).
EVENT_SEQUENCE = "pipeline_webhookevent_sequence"


class WebhookEvent(models.Model):
    """Something that happened, as sent to receivers: `{"id", "sequence", "type", "created_at", "data"}`.

    `record_owners` says who may see it in the event list, by the rule of its record at the time (SPEC §2): the
    owners of the record (an activity's own, and its deal's or lead's); a user sees the event when they may see the
    records of one of them. Null for an event about no record (`metrics.recomputed`), which every user may see.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Numbered by the database as the row is inserted, so that the event list and `after=` have a total order.
    sequence = models.BigIntegerField(
        unique=True,
        editable=False,
        db_default=Func(Value(EVENT_SEQUENCE), function="nextval", output_field=models.BigIntegerField()),
    )
    type = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)
    data = models.JSONField(encoder=DjangoJSONEncoder)
    record_owners = ArrayField(models.BigIntegerField(), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["type", "sequence"], name="webhook_event_type_sequence"),
            models.Index(fields=["created_at"], name="webhook_event_created"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """One event for one subscription, with the outcome of its last attempt.

    While pending or retrying, `next_attempt_at` says when it is due; an attempt in progress pushes it forward by a
    lease, so that a worker that died mid-attempt leaves the delivery due again rather than lost.
    """

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    response_body_prefix = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "event"], name="webhook_delivery_once_per_subscription"),
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="webhook_delivery_status_valid"),
        ]
        indexes = [
            models.Index(fields=["subscription", "-created_at"], name="webhook_delivery_log"),
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=Q(status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.subscription_id} ({self.status})"
