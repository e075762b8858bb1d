"""What webhooks cost the write path and the delivery log: query counts that do not grow with the data."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pipeline import selectors
from pipeline.webhooks import services as webhooks
from pipeline.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEvent
from tests.api.conftest import client_for
from tests.factories import make_deal
from tests.queries import CapturedQueries, assert_query_count, capture_queries

pytestmark = pytest.mark.django_db


def emit_queries(deal) -> tuple[CapturedQueries, WebhookEvent | None]:
    with capture_queries() as captured:
        event = webhooks.emit_event(
            type="deal.created", data=lambda: {"id": deal.pk}, record=deal, visible_to=selectors.visible_deals
        )
    return captured, event


def test_an_event_nobody_subscribed_to_costs_two_queries(org, pipeline):
    queries, event = emit_queries(make_deal(owner=org.rep, pipeline=pipeline))
    assert event.deliveries.count() == 0
    assert_query_count(queries, exactly=2)  # the subscriptions, the event (kept for the event list)


def test_the_cost_of_an_event_grows_with_the_owners_not_with_their_subscriptions(org, pipeline, receiver):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    for user in (org.rep, org.manager):
        webhooks.create_subscription(owner=user, url=receiver.url, events=["deal.created"])
    webhooks.create_subscription(owner=org.other_rep, url=receiver.url, events=["deal.created"])
    few, _ = emit_queries(deal)
    for user in (org.rep, org.manager, org.other_rep) * 5:
        webhooks.create_subscription(owner=user, url=receiver.url, events=["deal.created"])
    many, event = emit_queries(deal)
    assert_query_count(few, many)
    assert event.deliveries.count() == 12, "the other team's rep receives nothing"


def test_the_delivery_log_costs_the_same_for_any_page_size(org, receiver):
    subscription = webhooks.create_subscription(owner=org.rep, url=receiver.url, events=["deal.created"])
    for _ in range(5):
        webhooks.send_test_event(subscription=subscription)
    client = client_for(org.rep)
    client.get("/api/v1/webhooks/")  # the token's first use stamps last_used_at; measure the steady state
    captures = []
    for page_size in (1, 5):
        with capture_queries() as captured:
            response = client.get(f"/api/v1/webhooks/{subscription.pk}/deliveries/?page_size={page_size}")
        assert len(response.json()["results"]) == page_size
        captures.append(captured)
    assert_query_count(*captures)


def test_pruning_keeps_recent_and_unfinished_deliveries_and_every_event(org, receiver):
    subscription = webhooks.create_subscription(owner=org.rep, url=receiver.url, events=["deal.created"])
    old_done, old_pending, recent_done = (webhooks.send_test_event(subscription=subscription) for _ in range(3))
    long_ago = timezone.now() - timedelta(days=40)
    WebhookDelivery.objects.filter(pk__in=[old_done.pk, old_pending.pk]).update(created_at=long_ago)
    WebhookEvent.objects.filter(deliveries__in=[old_done.pk, old_pending.pk]).update(created_at=long_ago)
    WebhookDelivery.objects.filter(pk__in=[old_done.pk, recent_done.pk]).update(status=DeliveryStatus.SUCCEEDED)

    assert webhooks.prune_delivery_log(older_than=timezone.now() - timedelta(days=30)) == 1
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {old_pending.pk, recent_done.pk}
    assert WebhookEvent.objects.count() == 3, "events stay for the event list: prune_events removes them"


@pytest.mark.parametrize("role", ["rep", "admin"])
def test_the_event_list_costs_the_same_for_any_page_size(org, role):
    for n in range(6):
        webhooks.emit_event(type="deal.created", data=lambda n=n: {"id": n}, record_owners=[org.rep.pk])
    client = client_for(getattr(org, role))
    client.get("/api/v1/events/")  # the token's first use stamps last_used_at; measure the steady state
    captures = []
    for page_size in (1, 5):
        with capture_queries() as captured:
            response = client.get(f"/api/v1/events/?page_size={page_size}&type=deal.created")
        assert len(response.json()["results"]) == page_size
        captures.append(captured)
    assert_query_count(*captures)
