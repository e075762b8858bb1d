"""`/api/v1/webhooks/`: subscriptions visible only to their owner, the secret shown once, the delivery log, the test
action and secret rotation."""

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.services import create_api_token, revoke_api_token
from pipeline.webhooks.models import DeliveryStatus, WebhookSubscription
from tests.api.conftest import client_for
from tests.factories import make_deal
from tests.webhooks.conftest import verify

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery", "fast_retries")]


@pytest.fixture
def subscription_of(receiver):
    """`subscription_of(user)`: a subscription created through the API; its JSON (with the secret) is returned."""

    def make(user, events=("deal.created",), path="/hook"):
        response = client_for(user).post(
            "/api/v1/webhooks/", {"url": receiver.url + path, "events": list(events), "description": "CRM sync"}
        )
        assert response.status_code == 201, response.json()
        return response.json()

    return make


def test_creating_a_subscription_shows_its_secret_once(org, receiver):
    client = client_for(org.rep)
    response = client.post("/api/v1/webhooks/", {"url": receiver.url + "/in", "events": ["deal.created", "deal.won"]})

    assert response.status_code == 201
    body = response.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert body["events"] == ["deal.created", "deal.won"]
    assert (body["is_active"], body["disabled_at"], body["disabled_reason"]) == (True, None, "")
    assert WebhookSubscription.objects.get().owner == org.rep
    detail = client.get(f"/api/v1/webhooks/{body['id']}/")
    assert detail.status_code == 200 and "secret" not in detail.json()
    assert "ETag" in detail
    listed = client.get("/api/v1/webhooks/").json()["results"]
    assert [item["id"] for item in listed] == [body["id"]] and "secret" not in listed[0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://hooks.example.com/in", "events": []}, "events"),
        ({"url": "https://hooks.example.com/in", "events": ["deal.deleted"]}, "events"),
        ({"url": "not a url", "events": ["deal.created"]}, "url"),
        ({"events": ["deal.created"]}, "url"),
    ],
)
def test_invalid_subscriptions_are_refused_per_field(org, body, field):
    response = client_for(org.rep).post("/api/v1/webhooks/", body)
    assert response.status_code == 400
    assert field in response.json()


def test_the_owner_changes_and_deletes_a_subscription(org, receiver, subscription_of):
    created = subscription_of(org.rep)
    client = client_for(org.rep)
    url = f"/api/v1/webhooks/{created['id']}/"

    response = client.patch(url, {"events": ["lead.created"], "description": "Leads only"})
    assert response.status_code == 200
    assert (response.json()["events"], response.json()["description"]) == (["lead.created"], "Leads only")
    stale = client.put(url, {"url": receiver.url, "events": ["deal.won"]}, HTTP_IF_MATCH='W/"stale"')
    assert stale.status_code == 412
    assert client.put(url, {"url": receiver.url + "/v2", "events": ["deal.won"]}).json()["url"].endswith("/v2")
    assert client.patch(url, {"url": "https://10.0.0.1/x"}).status_code == 400
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404


@pytest.mark.parametrize("role", ["teammate", "manager", "admin", "other_rep"])
def test_another_users_subscription_answers_404_even_to_an_admin(org, role, subscription_of):
    subscription_id = subscription_of(org.rep)["id"]
    client = client_for(getattr(org, role))
    base = f"/api/v1/webhooks/{subscription_id}/"
    assert client.get("/api/v1/webhooks/").json()["results"] == []
    assert client.get(base).status_code == 404
    assert client.patch(base, {"description": "mine now"}).status_code == 404
    assert client.delete(base).status_code == 404
    assert client.get(base + "deliveries/").status_code == 404
    assert client.post(base + "test/").status_code == 404
    assert client.post(base + "rotate-secret/").status_code == 404
    assert WebhookSubscription.objects.get().description == "CRM sync"


@pytest.mark.parametrize("who", ["anonymous", "revoked_token"])
def test_webhooks_need_authentication(org, subscription_of, who):
    subscription_id = subscription_of(org.rep)["id"]
    client = APIClient()
    if who == "revoked_token":
        token, raw_token = create_api_token(user=org.rep, name="revoked")
        revoke_api_token(token=token)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_token}")
    assert client.get("/api/v1/webhooks/").status_code == 401
    assert client.get(f"/api/v1/webhooks/{subscription_id}/").status_code == 401
    assert client.post(f"/api/v1/webhooks/{subscription_id}/test/").status_code == 401


@override_settings(WEBHOOK_MAX_SUBSCRIPTIONS_PER_USER=2)
def test_a_user_has_a_bounded_number_of_subscriptions(org, subscription_of, receiver):
    subscription_of(org.rep)
    subscription_of(org.rep)
    response = client_for(org.rep).post("/api/v1/webhooks/", {"url": receiver.url, "events": ["deal.created"]})
    assert response.status_code == 400
    assert "non_field_errors" in response.json()
    subscription_of(org.manager)  # the limit is per user


def test_a_disabled_subscription_still_gets_its_test_event(org, receiver, subscription_of, after_commit):
    created = subscription_of(org.rep)
    WebhookSubscription.objects.update(is_active=False)
    with after_commit():
        client_for(org.rep).post(f"/api/v1/webhooks/{created['id']}/test/")
    assert receiver.wait_for(1)[0].json["type"] == "webhook.test"


def test_the_test_action_sends_a_signed_test_event_and_logs_it(org, receiver, subscription_of, after_commit):
    created = subscription_of(org.rep)
    client = client_for(org.rep)
    with after_commit():
        response = client.post(f"/api/v1/webhooks/{created['id']}/test/")

    assert response.status_code == 202
    assert (response.json()["event_type"], response.json()["status"]) == ("webhook.test", "pending")
    [request] = receiver.wait_for(1)
    assert verify(secret=created["secret"], header=request.headers["X-Signature"], body=request.body)
    assert request.json["type"] == "webhook.test" and request.json["id"] == response.json()["event_id"]
    [logged] = client.get(f"/api/v1/webhooks/{created['id']}/deliveries/").json()["results"]
    assert logged["status"] == DeliveryStatus.SUCCEEDED
    assert (logged["attempts"], logged["response_status"], logged["response_body_prefix"]) == (1, 200, "ok")
    assert logged["latency_ms"] is not None and logged["last_error"] == ""


def test_a_failed_test_event_is_tried_once_and_does_not_count_against_the_subscription(
    org, receiver, subscription_of, after_commit
):
    created = subscription_of(org.rep)
    receiver.plan(500, body=b'{"error": "nope"}')
    with after_commit():
        client_for(org.rep).post(f"/api/v1/webhooks/{created['id']}/test/")
    [logged] = client_for(org.rep).get(f"/api/v1/webhooks/{created['id']}/deliveries/").json()["results"]
    assert (logged["status"], logged["attempts"], logged["response_status"]) == ("failed", 1, 500)
    assert logged["last_error"] == "The receiver answered HTTP 500."
    assert logged["response_body_prefix"] == '{"error": "nope"}'
    assert WebhookSubscription.objects.get().consecutive_failures == 0


def test_the_delivery_log_lists_newest_first_and_only_this_subscriptions_deliveries(
    org, pipeline, receiver, subscription_of, after_commit
):
    first = subscription_of(org.rep, path="/first")
    second = subscription_of(org.rep, path="/second")
    for title in ("One", "Two"):
        with after_commit():
            make_deal(owner=org.rep, pipeline=pipeline, title=title)
    receiver.wait_for(4)
    response = client_for(org.rep).get(f"/api/v1/webhooks/{first['id']}/deliveries/?page_size=1")
    assert response.status_code == 200
    body = response.json()
    assert len(body["results"]) == 1 and body["next"]
    second_log = client_for(org.rep).get(f"/api/v1/webhooks/{second['id']}/deliveries/").json()["results"]
    assert len(second_log) == 2
    assert {entry["event_id"] for entry in second_log} == {
        entry["event_id"] for entry in client_for(org.rep).get(body["next"]).json()["results"] + body["results"]
    }


def test_a_disabled_subscription_shows_why_and_is_switched_back_on_by_patch(
    org, pipeline, receiver, subscription_of, after_commit
):
    created = subscription_of(org.rep)
    receiver.plan(410)
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
    client = client_for(org.rep)
    url = f"/api/v1/webhooks/{created['id']}/"
    body = client.get(url).json()
    assert body["is_active"] is False
    assert body["disabled_at"] and "410 Gone" in body["disabled_reason"]

    body = client.patch(url, {"is_active": True}).json()
    assert (body["is_active"], body["disabled_at"], body["disabled_reason"]) == (True, None, "")


def test_rotating_the_secret_shows_the_new_one(org, subscription_of):
    created = subscription_of(org.rep)
    response = client_for(org.rep).post(f"/api/v1/webhooks/{created['id']}/rotate-secret/")
    assert response.status_code == 200
    assert response.json()["secret"] != created["secret"]
    assert response.json()["secret"] == WebhookSubscription.objects.get().secret


def test_the_delivery_log_filters_by_status(org, receiver, subscription_of, after_commit):
    created = subscription_of(org.rep)
    receiver.plan(500)
    client = client_for(org.rep)
    for _ in range(2):
        with after_commit():
            client.post(f"/api/v1/webhooks/{created['id']}/test/")
    url = f"/api/v1/webhooks/{created['id']}/deliveries/"
    assert [entry["status"] for entry in client.get(url + "?status=failed").json()["results"]] == ["failed"]
    assert [entry["status"] for entry in client.get(url + "?status=succeeded").json()["results"]] == ["succeeded"]
    response = client.get(url + "?status=lost")
    assert response.status_code == 400 and "status" in response.json()
