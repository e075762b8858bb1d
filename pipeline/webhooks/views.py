"""`/api/v1/webhooks/`: a user's webhook subscriptions, their delivery log, a test event, secret rotation and
replay; `/api/v1/events/`: the events a user may see, oldest first.

Subscriptions are visible only to their owner (another user's answers 404, an admin's included); every write is one
call to `pipeline.webhooks.services`.
"""

from django.db import transaction
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from config.api import DestroyMixin, UpdateMixin, VisibleViewSet
from pipeline.webhooks import selectors, services
from pipeline.webhooks import serializers as s
from pipeline.webhooks.filters import EventFilter
from pipeline.webhooks.models import DeliveryStatus, WebhookEvent, WebhookSubscription


@extend_schema_view(
    update=extend_schema(
        description="Change the URL, events or description; `is_active: true` re-enables a disabled one."
    ),
    partial_update=extend_schema(description="Change some of the URL, events, description and `is_active`."),
    destroy=extend_schema(responses={204: None}, description="Delete the subscription and its delivery log."),
)
class WebhookSubscriptionViewSet(UpdateMixin, DestroyMixin, VisibleViewSet):
    """Webhook subscriptions of the signed-in user (an admin's receive the whole company's records)."""

    model = WebhookSubscription
    serializer_class = s.WebhookSubscriptionSerializer
    ordering_fields = ["created_at", "url", "id"]
    search_fields = ["url", "description"]
    filterset_fields = ["is_active"]

    def visible_queryset(self):
        return selectors.webhook_subscriptions_of(self.request.user)

    def editable_queryset(self):
        return selectors.webhook_subscriptions_of(self.request.user)

    def get_serializer_class(self):
        return {
            "deliveries": s.WebhookDeliverySerializer,
            "rotate_secret": s.WebhookSubscriptionWithSecretSerializer,
            "test": s.WebhookDeliverySerializer,
            "replay": s.ReplayRequestSerializer,
        }.get(self.action, s.WebhookSubscriptionSerializer)

    @extend_schema(
        responses={201: s.WebhookSubscriptionWithSecretSerializer},
        description="Subscribe a URL to event types. The answer carries the signing `secret`, shown only this once.",
    )
    def create(self, request):
        subscription = services.create_subscription(owner=request.user, **self.validated_data())
        data = s.WebhookSubscriptionWithSecretSerializer(subscription).data
        return Response(data, status=status.HTTP_201_CREATED, headers={"ETag": self.etag(subscription)})

    def perform_update(self, subscription, data):
        return services.update_subscription(subscription=subscription, **data)

    def perform_destroy(self, subscription):
        services.delete_subscription(subscription=subscription)

    @extend_schema(
        request=None,
        responses={200: s.WebhookSubscriptionWithSecretSerializer},
        description="Replace the signing secret; the answer shows the new one. The previous secret keeps signing "
        "deliveries (as a second `v1=` in X-Signature) for a grace period, so receivers can switch without gaps.",
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        with transaction.atomic():
            subscription = self.get_editable_object(lock=True)
            subscription = services.rotate_secret(subscription=subscription)
        return Response(s.WebhookSubscriptionWithSecretSerializer(subscription).data)

    @extend_schema(
        request=None,
        responses={202: s.WebhookDeliverySerializer},
        description="Queue a `webhook.test` event to this subscription (even a disabled one). It is tried once; "
        "its outcome appears in the delivery log.",
    )
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        delivery = services.send_test_event(subscription=self.get_editable_object())
        return Response(s.WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        operation_id="webhooks_deliveries_list",
        responses=s.WebhookDeliverySerializer(many=True),
        parameters=[
            OpenApiParameter("status", str, enum=DeliveryStatus.values, description="Only deliveries in this status.")
        ],
        description="The delivery log, newest first: status, attempts, response code, latency, last error.",
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def deliveries(self, request, pk=None):
        deliveries = selectors.deliveries_of(subscription=self.get_object())
        wanted = request.query_params.get("status")
        if wanted is not None:
            if wanted not in DeliveryStatus.values:
                raise ValidationError({"status": [f"Choose one of: {', '.join(DeliveryStatus.values)}."]})
            deliveries = deliveries.filter(status=wanted)
        page = self.paginate_queryset(deliveries)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        request=s.ReplayRequestSerializer,
        responses={202: s.ReplayResultSerializer},
        description="Deliver again the events of this subscription's types that its owner may see, after an event "
        "(`after`: its `sequence`) or since a time (`since`), oldest first and at most `WEBHOOK_REPLAY_MAX_EVENTS` "
        "per call. Each keeps its event `id` (de-duplicate on it) and is signed afresh. The subscription must be "
        "active.",
    )
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        subscription = self.get_editable_object()
        result = services.replay_events(subscription=subscription, **self.validated_data())
        return Response(s.ReplayResultSerializer(result).data, status=status.HTTP_202_ACCEPTED)


class EventViewSet(VisibleViewSet):
    """Every event webhooks send, about the records the signed-in user may see (SPEC §2), oldest first (ascending
    `sequence`), kept `EVENT_RETENTION_DAYS`, whether or not anybody subscribed to it. After an outage, a receiver
    walks it from the last `sequence` it processed (`?after=`), following `next`."""

    model = WebhookEvent
    serializer_class = s.WebhookEventSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = EventFilter

    def visible_queryset(self):
        return selectors.visible_events(user=self.request.user)
