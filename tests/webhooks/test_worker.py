"""The whole path through a real Celery worker process: commit → event → Redis → worker → signed POST → receipt.

Also measures the latency from the write to the receiver's receipt, printed at the end (run with `-s` to see it).
"""

import statistics
import time

import pytest
from django.db import transaction

from pipeline.webhooks import services as webhooks
from pipeline.webhooks.models import DeliveryStatus, WebhookDelivery
from tests.factories import make_deal, make_pipeline
from tests.webhooks.conftest import verify

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MEASURED_DELIVERIES = 10


@pytest.fixture
def pipeline(transactional_db):
    # The won/lost trigger is checked at commit; here every statement commits, so the stages must come in one go.
    with transaction.atomic():
        return make_pipeline(name="Worker", is_default=True)


@pytest.fixture
def worker(transactional_db, start_celery_worker):
    """A real Celery worker that may deliver to the loopback receiver, retrying quickly."""
    process = start_celery_worker(
        WEBHOOK_ALLOWED_HOSTS="127.0.0.1", WEBHOOK_RETRY_BASE_SECONDS="0.2", WEBHOOK_READ_TIMEOUT_SECONDS="2"
    )
    yield process
    if not process.alive():  # it died during the test: say why
        print(process.log(tail=3000))


def wait_until_recorded(delivery_count: int, timeout: float = 20.0) -> list[WebhookDelivery]:
    """The worker records an attempt after the receiver answered; wait until every delivery is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deliveries = list(WebhookDelivery.objects.filter(status=DeliveryStatus.SUCCEEDED))
        if len(deliveries) >= delivery_count:
            return deliveries
        time.sleep(0.05)
    raise AssertionError(f"only {WebhookDelivery.objects.filter(status='succeeded').count()} of {delivery_count}")


def test_deliveries_go_through_a_real_worker_retried_and_signed(org, pipeline, receiver, worker):
    subscription = webhooks.create_subscription(owner=org.rep, url=receiver.url + "/hook", events=["deal.created"])

    # The first delivery also waits for the worker to start; the receiver fails it once, so the worker retries.
    receiver.plan(500)
    make_deal(owner=org.rep, pipeline=pipeline, title="Warm-up")
    first, retried = receiver.wait_for(2, timeout=60)
    assert first.json["id"] == retried.json["id"]
    assert (first.headers["X-Webhook-Attempt"], retried.headers["X-Webhook-Attempt"]) == ("1", "2")
    wait_until_recorded(1)

    latencies, after_queuing = [], []
    for number in range(MEASURED_DELIVERIES):
        started = time.perf_counter()
        make_deal(owner=org.rep, pipeline=pipeline, title=f"Measured {number}")  # commits, then queues the send
        queued = time.perf_counter()
        received = receiver.wait_for(3 + number, timeout=20)
        assert len(received) == 3 + number
        latencies.append((received[-1].at - started) * 1000)
        after_queuing.append((received[-1].at - queued) * 1000)

    for request in receiver.received:
        assert verify(secret=subscription.secret, header=request.headers["X-Signature"], body=request.body)
    deliveries = wait_until_recorded(1 + MEASURED_DELIVERIES)
    assert sorted(delivery.attempts for delivery in deliveries) == [1] * MEASURED_DELIVERIES + [2]
    print(
        f"\nwebhook latency through a real worker, {MEASURED_DELIVERIES} deliveries: from the write (create_deal: "
        f"insert, commit, event and delivery rows, queuing) to receipt: median {statistics.median(latencies):.1f} ms "
        f"(min {min(latencies):.1f}, max {max(latencies):.1f}); from queued to receipt: median "
        f"{statistics.median(after_queuing):.1f} ms (min {min(after_queuing):.1f}, max {max(after_queuing):.1f})"
    )


def test_a_replay_goes_through_a_real_worker_with_the_original_ids(org, pipeline, receiver, worker):
    from pipeline.webhooks.models import WebhookEvent
    from tests.api.conftest import client_for

    # Written while no subscription existed (the receiver's own outage, say): only the event list has them.
    deals = [make_deal(owner=org.rep, pipeline=pipeline, title=f"Missed {n}") for n in range(3)]
    events = list(WebhookEvent.objects.filter(type="deal.created").order_by("sequence"))
    assert [event.data["id"] for event in events] == [deal.pk for deal in deals]
    subscription = webhooks.create_subscription(owner=org.rep, url=receiver.url + "/hook", events=["deal.created"])

    response = client_for(org.rep).post(f"/api/v1/webhooks/{subscription.pk}/replay/", {"after": 0}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["queued"] == 3
    received = receiver.wait_for(3, timeout=60)
    assert sorted(request.json["id"] for request in received) == sorted(str(event.id) for event in events)
    for request in received:
        assert verify(secret=subscription.secret, header=request.headers["X-Signature"], body=request.body)
    wait_until_recorded(3)
