"""Reads of webhooks: a user sees their own subscriptions only, whatever their role (the secret signs for them)."""

from django.db.models import QuerySet

from accounts.models import User
from pipeline.webhooks.models import WebhookDelivery, WebhookSubscription


def webhook_subscriptions_of(user: User) -> QuerySet[WebhookSubscription]:
    """The subscriptions `user` owns, newest first; nobody sees another user's."""
    if not user.is_authenticated:
        return WebhookSubscription.objects.none()
    return WebhookSubscription.objects.filter(owner=user)


def deliveries_of(*, subscription: WebhookSubscription) -> QuerySet[WebhookDelivery]:
    """The delivery log of `subscription`, newest first, with each delivery's event."""
    return subscription.deliveries.select_related("event").order_by("-created_at", "-id")
