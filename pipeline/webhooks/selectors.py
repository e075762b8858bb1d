"""Reads of webhooks: a user sees their own subscriptions only, whatever their role (the secret signs for them); the
event list shows each user the events about records they may see (SPEC §2), as subscriptions receive them."""

from collections.abc import Iterable

from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import Q, QuerySet

from accounts.models import User
from accounts.selectors import owners_visible_to
from pipeline.webhooks.models import TEST_EVENT_TYPE, WebhookDelivery, WebhookEvent, WebhookSubscription


def webhook_subscriptions_of(user: User) -> QuerySet[WebhookSubscription]:
    """The subscriptions `user` owns, newest first; nobody sees another user's."""
    if not user.is_authenticated:
        return WebhookSubscription.objects.none()
    return WebhookSubscription.objects.filter(owner=user)


def deliveries_of(*, subscription: WebhookSubscription) -> QuerySet[WebhookDelivery]:
    """The delivery log of `subscription`, newest first, with each delivery's event."""
    return subscription.deliveries.select_related("event").order_by("-created_at", "-id")


def visible_events(*, user: User, types: Iterable[str] | None = None) -> QuerySet[WebhookEvent]:
    """The events `user` may see, in `sequence` order: those about records of owners whose records they may see
    (all, for an admin), and those about no record. Test events, sent to one subscription only, are not listed."""
    if not user.is_authenticated or not user.is_active:
        return WebhookEvent.objects.none()
    events = WebhookEvent.objects.exclude(type=TEST_EVENT_TYPE).order_by("sequence")
    if types is not None:
        events = events.filter(type__in=list(types))
    owners = owners_visible_to(user)
    if owners is None:
        return events
    # The array overlap (&&) compares with an array: the visible owners' ids as ARRAY(SELECT ...), in the same query.
    return events.filter(Q(record_owners__isnull=True) | Q(record_owners__overlap=ArraySubquery(owners)))
