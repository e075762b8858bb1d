"""Recomputes through a REAL Celery worker process on the real broker, against the committed test database."""

import functools
import time
from collections.abc import Callable

import psycopg
import pytest
from django.db import connection

from forecasting import services
from forecasting.models import MetricSnapshot, MetricsRun, RunStatus
from forecasting.services import recompute_metrics
from forecasting.tasks import recompute_metrics_task
from tests.factories import make_deal
from tools.processes import AppProcess

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def start_worker(start_celery_worker) -> Callable[[], AppProcess]:
    # The worker sees committed data only, so it recomputes as deployed: on two connections.
    return functools.partial(start_celery_worker, METRICS_CONNECTIONS="2")


def _wait_for(condition, *, timeout: float, what: str, worker: AppProcess | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{worker.log()}" if worker else ""))


def _latest_complete() -> MetricsRun | None:
    return MetricsRun.objects.filter(status=RunStatus.COMPLETE).order_by("-computed_at", "-id").first()


def _other_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    return psycopg.connect(**{key: value for key, value in params.items() if key not in {"cursor_factory", "context"}})


def _count_waiting_on_locks() -> int:
    # A fresh connection each time: pg_stat_activity is a snapshot that stays fixed inside a transaction.
    with _other_connection() as observer:
        return observer.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()[0]


def test_a_worker_recomputes_into_a_fresh_snapshot(org, pipeline, start_worker):
    make_deal(owner=org.rep, pipeline=pipeline)
    worker = start_worker()
    run_id = recompute_metrics_task.delay().get(timeout=60)
    run = MetricsRun.objects.get(pk=run_id)
    assert run == _latest_complete()
    assert MetricSnapshot.objects.filter(run=run, metric="stale").count() == 1, worker.log()


def test_a_change_queues_a_debounced_recompute_that_a_worker_runs(org, pipeline, start_worker, settings):
    settings.METRICS_RECOMPUTE_ON_CHANGE = True
    settings.METRICS_DEBOUNCE_SECONDS = 1
    services.clear_pending_recompute()
    worker = start_worker()
    make_deal(owner=org.rep, pipeline=pipeline)  # autocommit: the signal is sent at once
    make_deal(owner=org.rep, pipeline=pipeline)  # rides along with the pending recompute
    run = _wait_for(_latest_complete, timeout=60, what="the debounced recompute", worker=worker)
    _wait_for(
        lambda: MetricSnapshot.objects.filter(run=_latest_complete(), metric="stale").count() == 2,
        timeout=30,
        what="a run that saw both deals",
        worker=worker,
    )
    assert MetricsRun.objects.filter(pk__gte=run.pk).count() <= 2


def test_a_deal_change_is_refreshed_in_place_by_a_worker_right_away(org, pipeline, start_worker, settings):
    settings.METRICS_RECOMPUTE_ON_CHANGE = True
    make_deal(owner=org.rep, pipeline=pipeline)
    run = recompute_metrics()
    services.clear_pending_refresh()
    worker = start_worker()
    make_deal(owner=org.rep, pipeline=pipeline)  # autocommit: the signal is sent at once, the refresh queued

    def refreshed() -> bool:
        run.refresh_from_db()
        return run.refreshed_at is not None

    _wait_for(refreshed, timeout=60, what="the refresh", worker=worker)
    assert _latest_complete() == run  # the same run, brought up to date in place
    assert MetricSnapshot.objects.filter(run=run, metric="stale").count() == 2
    assert run.row_count == MetricSnapshot.objects.filter(run=run).count()


def test_a_worker_killed_mid_run_leaves_the_last_snapshot_and_the_next_run_completes(org, pipeline, start_worker):
    make_deal(owner=org.rep, pipeline=pipeline)
    before = recompute_metrics()
    with _other_connection() as blocker:
        # Hold the leads table so the worker's recompute stops half-way, its earlier families already written.
        blocker.execute("LOCK TABLE pipeline_lead IN ACCESS EXCLUSIVE MODE")
        worker = start_worker()
        recompute_metrics_task.delay()
        _wait_for(
            lambda: _count_waiting_on_locks(),
            timeout=60,
            what="the worker's recompute to block",
            worker=worker,
        )
        assert _latest_complete() == before
        worker.kill()
        assert _latest_complete() == before
        assert MetricSnapshot.objects.filter(run=before).count() == before.row_count
        blocker.rollback()

    # The dead worker's backend notices the lost client and rolls back; a new worker's run then completes.
    next_worker = start_worker()
    run_id = _wait_for(
        lambda: recompute_metrics_task.delay().get(timeout=60), timeout=60, what="a completed run", worker=next_worker
    )
    assert _latest_complete().pk == run_id != before.pk
    assert MetricSnapshot.objects.filter(run_id=run_id).count() == before.row_count
