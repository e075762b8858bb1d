"""Recomputes through a REAL Celery worker process on the real broker, against the committed test database."""

import functools
import time
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection

from forecasting import services
from forecasting.models import MetricSnapshot, MetricsRun, PendingChange, RunStatus
from forecasting.periods import Period
from forecasting.services import recompute_metrics
from forecasting.tasks import recompute_metrics_task
from pipeline import services as pipeline_services
from pipeline.models import Deal
from tests.factories import make_deal, make_qualified_deal, stage
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


def test_a_new_stage_probability_then_a_move_are_recomputed_by_a_worker_never_mixed(
    org, pipeline, start_worker, settings
):
    # Open deals expected to close in each month of next quarter, in two stages.
    today = date.today()
    quarter = Period.parse(f"{today.year}-Q{(today.month - 1) // 3 + 1}")
    quarter = Period.parse(f"{quarter.end.year}-Q{(quarter.end.month - 1) // 3 + 1}")
    months = [quarter.start, quarter.start.replace(month=quarter.start.month + 1)]
    months.append(quarter.start.replace(month=quarter.start.month + 2))
    deals = [
        make_qualified_deal(
            owner=org.rep,
            pipeline=pipeline,
            stage=stage(pipeline, name),
            amount=Decimal(1000 * (index + 1)),
            expected_close_date=months[index % 3] + timedelta(days=9),
        )
        for index, name in enumerate(["Qualification", "Discovery"] * 3)
    ]
    run = recompute_metrics()
    services.clear_pending_recompute()
    services.clear_pending_refresh()
    settings.METRICS_RECOMPUTE_ON_CHANGE = True
    settings.METRICS_DEBOUNCE_SECONDS = 1
    worker = start_worker()

    # Autocommit: each write's signal is sent at once, queuing the recompute, then the refresh, for the worker.
    pipeline_services.update_stage(stage=stage(pipeline, "Discovery"), actor=org.admin, probability=70)
    pipeline_services.move_deal(deal=deals[0], stage=stage(pipeline, "Discovery"), actor=org.rep)

    def recomputed() -> MetricsRun | None:
        latest = _latest_complete()
        fresh = latest != run and services.configuration_is_current() and not PendingChange.objects.exists()
        return latest if fresh else None

    new_run = _wait_for(recomputed, timeout=60, what="the recompute with the new probability", worker=worker)
    run.refresh_from_db()
    assert run.refreshed_at is None, worker.log()  # the old run was never patched with the new probability

    def weighted(kind: str, start: date) -> Decimal:
        row = MetricSnapshot.objects.get(
            run=new_run, metric="forecast", group_kind="company", period_kind=kind, period_start=start
        )
        return Decimal(row.values["weighted_configured"])

    reference = sum(
        (deal.amount * deal.stage.probability / 100 for deal in Deal.objects.select_related("stage")), Decimal(0)
    ).quantize(Decimal("0.01"))
    assert weighted("quarter", quarter.start) == sum(weighted("month", month) for month in months) == reference
