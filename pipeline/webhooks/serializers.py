"""Shapes of webhook subscriptions and their delivery log in the API."""

from rest_framework import serializers

from pipeline.webhooks.models import EventType, WebhookDelivery, WebhookSubscription


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
