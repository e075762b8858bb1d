"""Recomputes through a REAL Celery worker process on the real broker, against the committed test database."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection

from config.celery import app
from forecasting import services
from forecasting.models import MetricSnapshot, MetricsRun, RunStatus
from forecasting.services import recompute_metrics
from forecasting.tasks import recompute_metrics_task
from tests.factories import make_deal

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    """The URL of the database this test session uses (the test database), for the worker."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    return f"postgresql://{quote(db['USER'])}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class Worker:
    def __init__(self, log_path: Path) -> None:
        env = os.environ | {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": _database_url(),
            "REDIS_URL": django_settings.REDIS_URL,
            "TEST_REDIS_DB": django_settings.REDIS_URL.rsplit("/", 1)[1],
            # The worker sees committed data only, so it recomputes as deployed: on two connections.
            "METRICS_CONNECTIONS": "2",
        }
        env.pop("TEST_DATABASE_NAME", None)
        self.log_path = log_path
        self.process = subprocess.Popen(
            [
                *[sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "INFO"],
                *["--without-gossip", "--without-mingle", "--hostname", f"metrics-test-{uuid.uuid4().hex[:8]}@%h"],
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_worker(tmp_path) -> Iterator:
    app.control.purge()  # nothing left over from earlier tests
    workers: list[Worker] = []

    def start() -> Worker:
        worker = Worker(tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def _wait_for(condition, *, timeout: float, what: str, worker: Worker | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n--- worker log ---\n{worker.log()}" if worker else ""))


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
