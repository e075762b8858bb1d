"""Deliveries to a real local receiver: signed, after commit, retried with a log, and only of visible records."""

import uuid
from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.test import override_settings

from accounts.models import Role
from pipeline import services
from pipeline.api.serializers import DealSerializer
from pipeline.webhooks import safety, sending
from pipeline.webhooks import services as webhooks
from pipeline.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEvent
from pipeline.webhooks.tasks import send_delivery, send_due_deliveries
from tests.factories import make_deal, make_qualified_deal, make_user, stage
from tests.webhooks.conftest import verify

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery", "fast_retries")]


def subscribe(user, receiver, *events, path="/hook"):
    return webhooks.create_subscription(owner=user, url=receiver.url + path, events=events or ["deal.created"])


def test_a_created_deal_is_delivered_signed_with_the_api_representation(org, pipeline, receiver, after_commit):
    subscription = subscribe(org.rep, receiver)
    with after_commit():
        deal = make_deal(owner=org.rep, pipeline=pipeline, title="Signed")

    [request] = receiver.wait_for(1)
    assert verify(secret=subscription.secret, header=request.headers["X-Signature"], body=request.body)
    assert not verify(secret="whsec_wrong", header=request.headers["X-Signature"], body=request.body)
    payload = request.json
    assert set(payload) == {"id", "sequence", "type", "created_at", "data"}
    assert payload["type"] == "deal.created"
    assert str(uuid.UUID(payload["id"])) == payload["id"] == request.headers["X-Webhook-Id"]
    assert payload["data"] == dict(DealSerializer(deal).data)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert (delivery.attempts, delivery.response_status, delivery.response_body_prefix) == (1, 200, "ok")
    assert delivery.latency_ms is not None and delivery.delivered_at is not None


def test_nothing_is_written_or_sent_for_a_write_that_rolls_back(org, pipeline, receiver, after_commit):
    subscribe(org.rep, receiver)
    with after_commit(), pytest.raises(RuntimeError), transaction.atomic():
        make_deal(owner=org.rep, pipeline=pipeline)
        raise RuntimeError("rolled back")
    assert not WebhookEvent.objects.exists()
    assert receiver.received == []


def test_a_failing_receiver_gets_the_same_event_again_until_it_answers(org, pipeline, receiver, after_commit):
    subscribe(org.rep, receiver)
    receiver.plan(500, body=b"database down", times=2)
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)

    requests = receiver.wait_for(3)
    assert len({request.json["id"] for request in requests}) == 1
    assert [request.headers["X-Webhook-Attempt"] for request in requests] == ["1", "2", "3"]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_status) == (DeliveryStatus.SUCCEEDED, 3, 200)
    assert delivery.subscription.consecutive_failures == 0


def test_a_delivery_gives_up_after_the_last_attempt_and_logs_why(org, pipeline, receiver, after_commit):
    subscribe(org.rep, receiver)
    receiver.plan(500, body=b"x" * 5000, times=3)
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)

    assert len(receiver.wait_for(3)) == 3
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_status) == (DeliveryStatus.FAILED, 3, 500)
    assert delivery.last_error == "The receiver answered HTTP 500."
    assert delivery.response_body_prefix == "x" * 1024
    assert delivery.next_attempt_at is None
    assert delivery.subscription.consecutive_failures == 1


def test_a_receiver_that_times_out_is_retried_and_the_timeout_logged(org, pipeline, receiver, after_commit):
    subscribe(org.rep, receiver)
    receiver.plan(200, delay=1.0, times=3)
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)

    assert len(receiver.wait_for(3)) == 3
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_status) == (DeliveryStatus.FAILED, 3, None)
    assert "timed out" in delivery.last_error


def test_an_unreachable_receiver_is_retried_and_the_network_error_logged(org, pipeline, receiver, after_commit):
    webhooks.create_subscription(owner=org.rep, url="http://127.0.0.1:9/closed", events=["deal.created"])
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 3)
    assert "NewConnectionError" in delivery.last_error or "refused" in delivery.last_error


def test_redirects_are_not_followed(org, pipeline, receiver, after_commit):
    subscribe(org.rep, receiver)
    receiver.plan(302, times=3)
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
    assert len(receiver.wait_for(3)) == 3
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error.startswith("Redirects are not followed")


def test_410_gone_disables_the_subscription_at_once_with_a_notice(org, pipeline, receiver, after_commit):
    subscription = subscribe(org.rep, receiver)
    receiver.plan(410)
    for _ in range(2):
        with after_commit():
            make_deal(owner=org.rep, pipeline=pipeline)

    assert len(receiver.received) == 1
    subscription.refresh_from_db()
    assert not subscription.is_active
    assert subscription.disabled_at is not None
    assert "410 Gone" in subscription.disabled_reason
    assert WebhookDelivery.objects.get().attempts == 1


@override_settings(WEBHOOK_DISABLE_AFTER_FAILURES=2, WEBHOOK_MAX_ATTEMPTS=1)
def test_a_subscription_that_keeps_failing_is_disabled_and_can_be_switched_back_on(
    org, pipeline, receiver, after_commit
):
    subscription = subscribe(org.rep, receiver)
    receiver.plan(503, times=2)
    for _ in range(3):
        with after_commit():
            make_deal(owner=org.rep, pipeline=pipeline)

    assert len(receiver.received) == 2
    assert WebhookDelivery.objects.count() == 2, "no delivery is made for a disabled subscription"
    subscription.refresh_from_db()
    assert (subscription.is_active, subscription.consecutive_failures) == (False, 2)
    assert subscription.disabled_reason.startswith("2 deliveries in a row failed")

    webhooks.update_subscription(subscription=subscription, is_active=True)
    subscription.refresh_from_db()
    assert (subscription.disabled_at, subscription.disabled_reason, subscription.consecutive_failures) == (None, "", 0)
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
    assert len(receiver.wait_for(3)) == 3


def test_a_delivery_already_done_is_not_sent_again(org, pipeline, receiver, after_commit):
    subscribe(org.rep, receiver)
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
    delivery = WebhookDelivery.objects.get()
    send_delivery(delivery.pk)
    assert send_due_deliveries() == 0
    assert len(receiver.received) == 1


def test_the_sweep_sends_deliveries_whose_task_was_lost(org, receiver):
    subscribe(org.admin, receiver, "metrics.recomputed")
    # Outside `after_commit` the queuing callback never runs: as if Redis had been away when the event was written.
    webhooks.emit_metrics_recomputed(computed_at=datetime(2026, 11, 25, tzinfo=UTC))
    assert receiver.received == []
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING
    assert send_due_deliveries() == 1
    assert receiver.wait_for(1)[0].json["type"] == "metrics.recomputed"


def test_stage_changes_to_won_and_lost_are_their_own_events(org, pipeline, lost_reason, receiver, after_commit):
    subscribe(org.rep, receiver, "deal.stage_changed", "deal.won", "deal.lost")
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    other = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    with after_commit():
        services.move_deal(deal=deal, stage=stage(pipeline, "Won"), actor=org.rep)
        services.move_deal(deal=other, stage=stage(pipeline, "Lost"), actor=org.rep, lost_reason=lost_reason)

    types = [request.json["type"] for request in receiver.wait_for(4)]
    assert types == ["deal.stage_changed", "deal.won", "deal.stage_changed", "deal.lost"]
    assert receiver.received[1].json["data"]["status"] == "won"


def test_updates_leads_conversions_and_activities_are_delivered(org, pipeline, receiver, after_commit):
    subscribe(org.rep, receiver, "deal.updated", "lead.created", "lead.converted", "activity.created")
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    with after_commit():
        services.update_deal(deal=deal, actor=org.rep, title="Renamed")
        lead = services.create_lead(actor=org.rep, last_name="Lovelace", company="Analytical")
        services.log_activity(actor=org.rep, kind="call", subject="Intro", deal=deal)
        services.convert_lead(lead=lead, actor=org.rep)

    payloads = [request.json for request in receiver.wait_for(4)]
    assert [payload["type"] for payload in payloads] == [
        "deal.updated",
        "lead.created",
        "activity.created",
        "lead.converted",
    ]
    assert payloads[0]["data"]["title"] == "Renamed"
    assert payloads[3]["data"]["status"] == "converted" and payloads[3]["data"]["deal"] is not None


def test_metrics_recomputed_reaches_every_subscriber_of_it(org, receiver, after_commit):
    subscribe(org.rep, receiver, "metrics.recomputed", path="/rep")
    subscribe(org.manager, receiver, "metrics.recomputed", path="/manager")
    subscribe(org.admin, receiver, "deal.created", path="/admin")
    computed_at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    with after_commit():
        event = webhooks.emit_metrics_recomputed(computed_at=computed_at, periods=["2026-11", "2026-Q4"])

    requests = receiver.wait_for(2)
    assert sorted(request.path for request in requests) == ["/manager", "/rep"]
    assert requests[0].json["id"] == str(event.id)
    assert requests[0].json["data"] == {
        "computed_at": "2026-11-25T12:00:00Z",
        "periods": ["2026-11", "2026-Q4"],
        "full": False,
    }


def test_a_metrics_recompute_tells_its_subscribers(org, receiver, after_commit, pipeline):
    from forecasting.services import recompute_metrics

    subscribe(org.manager, receiver, "metrics.recomputed", path="/manager")
    with after_commit():
        run = recompute_metrics()

    [request] = receiver.wait_for(1)
    assert request.json["type"] == "metrics.recomputed"
    assert request.json["data"]["full"] is True
    sent_at = datetime.fromisoformat(request.json["data"]["computed_at"].replace("Z", "+00:00"))
    assert abs(sent_at - run.computed_at).total_seconds() < 0.001  # the API writes milliseconds


def test_an_event_nobody_subscribed_to_is_stored_for_the_event_list_without_deliveries(org):
    event = webhooks.emit_metrics_recomputed(computed_at=datetime(2026, 11, 25, tzinfo=UTC))
    assert list(WebhookEvent.objects.all()) == [event]
    assert not WebhookDelivery.objects.exists()


# --- Visibility (SPEC §2): a subscription receives only what its owner may see --------------------------------------

ROLES = ["rep", "teammate", "other_rep", "manager", "other_manager", "idle_manager", "admin"]


@pytest.mark.parametrize("visibility", ["own", "team"])
def test_a_subscription_never_receives_a_record_its_owner_cannot_see(
    org, pipeline, receiver, after_commit, settings, visibility
):
    settings.REP_VISIBILITY = visibility
    events = ["deal.created", "lead.created", "activity.created", "deal.stage_changed"]
    for role in ROLES:
        subscribe(getattr(org, role), receiver, *events, path=f"/{role}")
    with after_commit():
        deal = make_qualified_deal(owner=org.rep, pipeline=pipeline)
        services.create_lead(actor=org.rep, last_name="Lead of rep")
        services.log_activity(actor=org.rep, kind="call", subject="Call", deal=deal)
        services.move_deal(deal=deal, stage=stage(pipeline, "Qualification"), actor=org.rep)

    seeing = {"rep", "manager", "admin"} | ({"teammate"} if visibility == "team" else set())
    received = {}
    for request in receiver.wait_for(4 * len(seeing)):
        received.setdefault(request.path.strip("/"), []).append(request.json["type"])
    assert set(received) == seeing
    assert all(sorted(types) == sorted(events) for types in received.values())


def test_an_inactive_owner_receives_nothing(org, pipeline, receiver, after_commit):
    subscribe(org.admin, receiver, "deal.created", "metrics.recomputed")
    org.admin.is_active = False
    org.admin.save()
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
        webhooks.emit_metrics_recomputed(computed_at=datetime(2026, 11, 25, tzinfo=UTC))
    assert receiver.received == []
    assert not WebhookDelivery.objects.exists()


def test_a_demoted_admin_stops_receiving_the_company(org, pipeline, receiver, after_commit):
    admin = make_user(role=Role.ADMIN, username="demoted")
    subscribe(admin, receiver)
    admin.role = Role.REP
    admin.save()
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
    assert receiver.received == []


# --- Secrets ------------------------------------------------------------------------------------------------------


def test_after_a_rotation_both_secrets_sign_until_the_grace_period_ends(org, pipeline, receiver, after_commit):
    subscription = subscribe(org.rep, receiver)
    old_secret = subscription.secret
    webhooks.rotate_secret(subscription=subscription)
    assert subscription.secret != old_secret
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
    with override_settings(WEBHOOK_SECRET_ROTATION_GRACE_SECONDS=0), after_commit():
        webhooks.rotate_secret(subscription=subscription)
        make_deal(owner=org.rep, pipeline=pipeline)

    during, after = receiver.wait_for(2)
    assert verify(secret=old_secret, header=during.headers["X-Signature"], body=during.body)
    assert during.headers["X-Signature"].count("v1=") == 2
    assert after.headers["X-Signature"].count("v1=") == 1
    assert verify(secret=subscription.secret, header=after.headers["X-Signature"], body=after.body)


# --- Outbound safety at send time ---------------------------------------------------------------------------------


def test_an_address_no_longer_allowed_is_refused_at_send_time(org, pipeline, receiver, after_commit):
    subscribe(org.rep, receiver)
    with override_settings(WEBHOOK_ALLOWED_HOSTS=[]), after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
    assert receiver.received == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error == "Blocked: Webhook URLs must use https://."


def test_a_host_that_rebinds_to_a_private_address_is_refused_at_send_time(org, pipeline, after_commit, monkeypatch):
    answers = {"hooks.example.com": ["93.184.215.14"]}
    monkeypatch.setattr(safety, "_resolve", lambda host, port: answers[host])
    webhooks.create_subscription(owner=org.rep, url="https://hooks.example.com/in", events=["deal.created"])
    answers["hooks.example.com"] = ["93.184.215.14", "10.0.0.7"]
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert "10.0.0.7" in delivery.last_error and delivery.response_status is None


def test_an_unexpected_error_while_sending_is_logged_and_retried_not_lost(
    org, pipeline, receiver, after_commit, monkeypatch
):
    subscribe(org.rep, receiver)

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("pipeline.webhooks.sending.post", broken)
    with after_commit():
        make_deal(owner=org.rep, pipeline=pipeline)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 3)
    assert delivery.last_error == "Unexpected error while sending: RuntimeError"


def test_a_subscription_deleted_during_an_attempt_ends_the_attempt_quietly(org, pipeline, receiver, monkeypatch):
    subscription = subscribe(org.rep, receiver)
    make_deal(owner=org.rep, pipeline=pipeline)  # no on-commit here: the attempt is made below, by hand
    webhooks.emit_event(type="deal.created", data=lambda: {"id": 1})
    real_post = sending.post

    def post_then_delete(**kwargs):
        outcome = real_post(**kwargs)
        webhooks.delete_subscription(subscription=subscription)
        return outcome

    monkeypatch.setattr(sending, "post", post_then_delete)
    sending.attempt_delivery(delivery_id=WebhookDelivery.objects.get().pk)
    assert len(receiver.received) == 1
    assert not WebhookDelivery.objects.exists()


def test_with_the_broker_down_the_write_succeeds_and_the_sweep_sends_later(
    org, pipeline, receiver, after_commit, monkeypatch
):
    from kombu.exceptions import OperationalError

    subscribe(org.rep, receiver)

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis: Connection refused.")

    with monkeypatch.context() as patch:
        patch.setattr(send_delivery, "delay", broker_down)
        with after_commit():
            deal = make_deal(owner=org.rep, pipeline=pipeline)
    assert deal.pk is not None and receiver.received == []
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING

    assert send_due_deliveries() == 1
    assert receiver.wait_for(1)[0].json["data"]["id"] == deal.pk
