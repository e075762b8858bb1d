"""Separate Celery queues (SPEC §5): a long full recompute never delays a webhook delivery (or a refresh)."""

import time

import psycopg
import pytest
from celery.result import AsyncResult
from django.db import transaction

from config.celery import QUEUES, WORKER_GROUPS, app
from forecasting.models import MetricsRun, RunStatus
from forecasting.recompute import RECOMPUTE_LOCK_KEY
from forecasting.tasks import recompute_metrics_task
from pipeline.webhooks import services as webhooks
from tests.conftest import committed_database_url
from tests.factories import make_deal, make_pipeline


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("forecasting.recompute_metrics", "recompute"),
        ("forecasting.refresh_metrics", "refresh"),
        ("pipeline.webhooks.send_delivery", "webhooks"),
        ("pipeline.webhooks.send_due_deliveries", "webhooks"),
        ("pipeline.run_import_job", "imports"),
        ("config.celery.heartbeat", "celery"),
    ],
)
def test_each_task_goes_to_its_queue(task, queue):
    assert app.amqp.router.route({}, task)["queue"].name == queue


def test_a_worker_without_queues_consumes_every_queue_and_the_groups_cover_them_once():
    # What `make run`, the tests' worker and a one-host deploy start: no -Q, so every configured queue.
    assert set(app.amqp.queues) == set(QUEUES) == {"recompute", "refresh", "webhooks", "imports", "celery"}
    grouped = [queue for group in WORKER_GROUPS.values() for queue in group]
    assert sorted(grouped) == sorted(QUEUES)
    assert set(WORKER_GROUPS["long"]) == {"recompute", "imports"}


def _recompute_holds_its_lock(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted", [RECOMPUTE_LOCK_KEY]
    ).fetchone()
    return row[0] > 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_webhook_is_delivered_while_a_full_recompute_runs(org, receiver, start_celery_worker):
    with transaction.atomic():  # the won/lost trigger is checked at commit: the stages come in one go
        pipeline = make_pipeline(name="Queues", is_default=True)
    # The workers of a deploy: one for the long queues, one for the short ones.
    start_celery_worker(queues=WORKER_GROUPS["long"])
    start_celery_worker(queues=WORKER_GROUPS["short"], WEBHOOK_ALLOWED_HOSTS="127.0.0.1")
    webhooks.create_subscription(owner=org.rep, url=receiver.url + "/hook", events=["deal.created"])

    with (
        psycopg.connect(committed_database_url()) as holder,
        psycopg.connect(committed_database_url(), autocommit=True) as observer,
    ):
        # A recompute that takes as long as the test wants: it starts, takes the recompute's lock, and its first
        # write waits on this lock until the test lets go (on a large company it would be computing for minutes).
        holder.execute("LOCK TABLE forecasting_metricsrun IN ACCESS EXCLUSIVE MODE")
        recompute = recompute_metrics_task.apply_async(kwargs={"reason": "request"})
        deadline = time.monotonic() + 90
        while not _recompute_holds_its_lock(observer):
            assert time.monotonic() < deadline, "the recompute did not start"
            time.sleep(0.1)

        started = time.monotonic()
        make_deal(owner=org.rep, pipeline=pipeline, title="Sold during the recompute")
        (received,) = receiver.wait_for(1, timeout=60)
        delivered_after = time.monotonic() - started

        assert received.json["type"] == "deal.created"
        assert received.json["data"]["title"] == "Sold during the recompute"
        # Delivered while the recompute was still running.
        assert _recompute_holds_its_lock(observer)
        assert AsyncResult(recompute.id).state != "SUCCESS"
        holder.rollback()

    run_id = recompute.get(timeout=120)
    assert MetricsRun.objects.get(pk=run_id).status == RunStatus.COMPLETE
    print(f"\nwebhook delivered {delivered_after * 1000:.0f} ms after the write, with a full recompute running")
