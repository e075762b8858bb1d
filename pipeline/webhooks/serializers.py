"""Shapes of webhook subscriptions and their delivery log in the API."""

from rest_framework import serializers

from pipeline.webhooks.models import EventType, WebhookDelivery, WebhookEvent, WebhookSubscription


class WebhookSubscriptionSerializer(serializers.ModelSerializer):
    """A subscription; `is_active` false with `disabled_at`/`disabled_reason` when it was switched off for failing."""

    url = serializers.URLField(
        max_length=2000,
        help_text="Where deliveries are POSTed: https, on a public address (loopback, private networks refused).",
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices),
        allow_empty=False,
        max_length=len(EventType.values),
        help_text="The event types to receive.",
    )

    class Meta:
        model = WebhookSubscription
        fields = [
            "id",
            "url",
            "description",
            "events",
            "is_active",
            "disabled_at",
            "disabled_reason",
            "consecutive_failures",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "disabled_at", "disabled_reason", "consecutive_failures", "created_at", "updated_at"]


class WebhookSubscriptionWithSecretSerializer(WebhookSubscriptionSerializer):
    """A subscription just created or whose secret was just rotated: the only times its `secret` is shown."""

    secret = serializers.CharField(
        read_only=True, help_text="Verifies the X-Signature header of deliveries; shown only now, keep it safe."
    )

    class Meta(WebhookSubscriptionSerializer.Meta):
        fields = [*WebhookSubscriptionSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer):
    """One event sent to the subscription, with the outcome of its last attempt."""

    event_id = serializers.UUIDField(source="event.id", read_only=True, help_text="The stable `id` receivers see.")
    event_type = serializers.CharField(source="event.type", read_only=True)
    response_body_prefix = serializers.CharField(
        read_only=True, help_text="The first kilobyte (at most) of the receiver's last answer."
    )

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "response_status",
            "latency_ms",
            "last_error",
            "response_body_prefix",
            "created_at",
            "last_attempt_at",
            "next_attempt_at",
            "delivered_at",
        ]
        read_only_fields = fields


class WebhookEventSerializer(serializers.ModelSerializer):
    """An event as webhooks send it (`id`, `type`, `created_at`, `data`), with its `sequence` in the event list."""

    id = serializers.UUIDField(read_only=True, help_text="The stable id a delivery of the event carries.")
    sequence = serializers.IntegerField(
        read_only=True, help_text="The event's place in the event list: pass the last one you processed as `after`."
    )
    data = serializers.JSONField(read_only=True, help_text="The record as the API showed it when the event happened.")

    class Meta:
        model = WebhookEvent
        fields = ["id", "sequence", "type", "created_at", "data"]
        read_only_fields = fields


class ReplayRequestSerializer(serializers.Serializer):
    """Which events to deliver again: after an event (`after`, its `sequence`) or since a time (`since`), one of
    the two (the service refuses neither or both)."""

    after = serializers.IntegerField(
        required=False, min_value=0, help_text="Deliver the events after this one (its `sequence`)."
    )
    since = serializers.DateTimeField(required=False, help_text="Deliver the events created at or after this time.")


class ReplayResultSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="How many deliveries were queued.")
    last_sequence = serializers.IntegerField(
        allow_null=True, help_text="The `sequence` of the last event queued (null when none matched)."
    )
    complete = serializers.BooleanField(
        help_text="False when more events matched than one replay sends: replay again with `after: last_sequence`."
    )
