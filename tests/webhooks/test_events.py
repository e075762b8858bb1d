"""The event list (`GET /api/v1/events/`) and replay (`POST /api/v1/webhooks/{id}/replay/`): every event kept
`EVENT_RETENTION_DAYS` in `sequence` order, filtered by `after` and `type`, and delivered again with its own id.
(Who sees which event, by role: tests/api/test_access_matrix.py.)"""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from pipeline import services
from pipeline.webhooks import services as webhooks
from pipeline.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEvent
from pipeline.webhooks.tasks import prune_old_events
from tests.api.conftest import client_for
from tests.factories import make_deal
from tests.webhooks.conftest import verify

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery", "fast_retries")]


@pytest.fixture
def history(org, pipeline, after_commit):
    """Five events about the rep's records, nobody subscribed: 3 deals created, one changed, one lead created."""
    with after_commit():
        deals = [make_deal(owner=org.rep, pipeline=pipeline, title=f"Deal {n}") for n in range(3)]
    with after_commit():
        services.update_deal(deal=deals[0], actor=org.rep, title="Deal 0, renamed")
        services.create_lead(actor=org.rep, last_name="Lead")
    return list(WebhookEvent.objects.order_by("sequence"))


def walk(client, url: str) -> list[dict]:
    """Every row of a list, following `next`."""
    rows = []
    while url:
        body = client.get(url).json()
        rows += body["results"]
        url = body["next"]
    return rows


def test_events_are_listed_oldest_first_with_the_body_webhooks_send(org, history):
    rows = walk(client_for(org.rep), "/api/v1/events/?page_size=2")
    assert [row["sequence"] for row in rows] == sorted(event.sequence for event in history)
    assert [row["type"] for row in rows] == ["deal.created"] * 3 + ["deal.updated", "lead.created"]
    assert [row["id"] for row in rows] == [str(event.id) for event in history]
    assert rows[3]["data"]["title"] == "Deal 0, renamed"
    assert set(rows[0]) == {"id", "sequence", "type", "created_at", "data"}


def test_after_lists_only_the_events_that_followed_one(org, history):
    client = client_for(org.rep)
    rows = walk(client, f"/api/v1/events/?after={history[1].sequence}")
    assert [row["id"] for row in rows] == [str(event.id) for event in history[2:]]
    assert walk(client, f"/api/v1/events/?after={history[-1].sequence}") == []


def test_type_narrows_the_list_and_combines_with_after(org, history):
    client = client_for(org.rep)
    created = walk(client, "/api/v1/events/?type=deal.created")
    assert [row["id"] for row in created] == [str(event.id) for event in history[:3]]
    later = walk(client, f"/api/v1/events/?type=deal.created&after={history[0].sequence}")
    assert [row["id"] for row in later] == [str(event.id) for event in history[1:3]]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("after=abc", "after"),
        ("after=-1", "after"),
        ("after=1.5", "after"),
        ("type=deal.exploded", "type"),
        ("page_size=0", "page_size"),
        ("cursor=not-a-cursor", "cursor"),
    ],
)
def test_a_bad_parameter_answers_400_naming_it(org, history, query, parameter):
    response = client_for(org.rep).get(f"/api/v1/events/?{query}")
    assert response.status_code == 400
    assert parameter in response.json()


def test_test_events_are_not_listed(org, receiver):
    subscription = webhooks.create_subscription(owner=org.rep, url=receiver.url, events=["deal.created"])
    webhooks.send_test_event(subscription=subscription)
    assert walk(client_for(org.rep), "/api/v1/events/") == []


def test_events_older_than_the_retention_are_pruned_unless_a_delivery_still_refers_to_them(org, pipeline, receiver):
    subscription = webhooks.create_subscription(owner=org.rep, url=receiver.url, events=["metrics.recomputed"])
    old_delivered = webhooks.emit_metrics_recomputed(computed_at=timezone.now())
    WebhookDelivery.objects.all().update(status=DeliveryStatus.PENDING, next_attempt_at=None)  # still in the log
    webhooks.update_subscription(subscription=subscription, is_active=False)
    old, recent = (webhooks.emit_metrics_recomputed(computed_at=timezone.now()) for _ in range(2))
    retention = timedelta(days=7)
    WebhookEvent.objects.filter(pk__in=[old_delivered.pk, old.pk]).update(
        created_at=timezone.now() - retention - timedelta(minutes=1)
    )
    with override_settings(EVENT_RETENTION_DAYS=7):
        assert prune_old_events() == 1
    assert set(WebhookEvent.objects.values_list("pk", flat=True)) == {old_delivered.pk, recent.pk}


# --- Replay -------------------------------------------------------------------------------------------------------


def test_a_replay_delivers_the_events_again_with_their_ids_and_fresh_signatures(
    org, pipeline, receiver, after_commit, history
):
    # The subscription is made after the events: a receiver that lost its endpoint catches up from the list.
    subscription = webhooks.create_subscription(owner=org.rep, url=receiver.url + "/hook", events=["deal.created"])
    client = client_for(org.rep)
    with after_commit():
        response = client.post(
            f"/api/v1/webhooks/{subscription.pk}/replay/", {"after": history[0].sequence}, format="json"
        )
    assert response.status_code == 202, response.content
    assert response.json() == {"queued": 2, "last_sequence": history[2].sequence, "complete": True}
    received = receiver.wait_for(2)
    assert [request.json["id"] for request in received] == [str(history[1].id), str(history[2].id)]
    assert [request.json["sequence"] for request in received] == [history[1].sequence, history[2].sequence]
    for request in received:
        assert verify(secret=subscription.secret, header=request.headers["X-Signature"], body=request.body)
        assert request.headers["X-Webhook-Id"] == request.json["id"]

    # Replayed again (since a time): the same deliveries come back pending, are signed afresh and sent again.
    since = (history[0].created_at - timedelta(seconds=1)).isoformat()
    with after_commit():
        again = client.post(f"/api/v1/webhooks/{subscription.pk}/replay/", {"since": since}, format="json")
    assert again.json()["queued"] == 3
    received = receiver.wait_for(5)
    assert [request.json["id"] for request in received[2:]] == [str(event.id) for event in history[:3]]
    assert received[0].body == received[3].body, "the same event, the same body"
    assert all(verify(secret=subscription.secret, header=r.headers["X-Signature"], body=r.body) for r in received)
    assert WebhookDelivery.objects.filter(subscription=subscription, status=DeliveryStatus.SUCCEEDED).count() == 3


def test_a_replay_sends_only_what_the_owner_may_see_and_stops_at_the_limit(org, pipeline, receiver, after_commit):
    with after_commit():
        mine = [make_deal(owner=org.rep, pipeline=pipeline) for _ in range(3)]
        make_deal(owner=org.other_rep, pipeline=pipeline)
    subscription = webhooks.create_subscription(owner=org.rep, url=receiver.url, events=["deal.created"])
    with override_settings(WEBHOOK_REPLAY_MAX_EVENTS=2), after_commit():
        first = client_for(org.rep).post(f"/api/v1/webhooks/{subscription.pk}/replay/", {"after": 0}, format="json")
        body = first.json()
        rest = client_for(org.rep).post(
            f"/api/v1/webhooks/{subscription.pk}/replay/", {"after": body["last_sequence"]}, format="json"
        )
    assert (body["queued"], body["complete"]) == (2, False)
    assert (rest.json()["queued"], rest.json()["complete"]) == (1, True)
    assert sorted(request.json["data"]["id"] for request in receiver.wait_for(3)) == [deal.pk for deal in mine]


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({}, "after"),
        ({"after": 1, "since": "2026-12-01T00:00:00Z"}, "after"),
        ({"after": "the start"}, "after"),
        ({"after": -1}, "after"),
        ({"since": "yesterday"}, "since"),
    ],
)
def test_a_bad_replay_answers_400_naming_the_parameter_and_queues_nothing(org, receiver, body, parameter):
    subscription = webhooks.create_subscription(owner=org.rep, url=receiver.url, events=["metrics.recomputed"])
    webhooks.emit_metrics_recomputed(computed_at=timezone.now())
    WebhookDelivery.objects.all().delete()
    response = client_for(org.rep).post(f"/api/v1/webhooks/{subscription.pk}/replay/", body, format="json")
    assert response.status_code == 400
    assert parameter in response.json()
    assert not WebhookDelivery.objects.exists()


def test_a_disabled_subscription_is_not_replayed(org, receiver):
    subscription = webhooks.create_subscription(owner=org.rep, url=receiver.url, events=["metrics.recomputed"])
    webhooks.update_subscription(subscription=subscription, is_active=False)
    response = client_for(org.rep).post(f"/api/v1/webhooks/{subscription.pk}/replay/", {"after": 0}, format="json")
    assert response.status_code == 400
    assert "is_active" in response.json()
