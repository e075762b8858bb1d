"""The backtest and calibration run apart from the full recompute (`forecasting.metrics.HISTORY_FAMILIES`): a
recompute carries the previous run's rows of theirs over, their own task rewrites them, and while it runs (minutes on
a million deals) recompute and refresh go on."""

import threading
from unittest import mock

import pytest
from django.db import connection

from forecasting import metrics, recompute, tasks
from forecasting.models import MetricSnapshot, MetricsRun, RunStatus
from forecasting.services import recompute_history_metrics, recompute_metrics, refresh_metrics
from tests.factories import make_deal
from tests.forecasting.test_backtest import AS_OF, history  # noqa: F401 (fixture)

HISTORY = [metric.value for metric in metrics.HISTORY_METRICS]


def history_rows(run: MetricsRun) -> list[tuple]:
    return sorted(
        MetricSnapshot.objects.filter(run=run, metric__in=HISTORY).values_list(
            "metric", "period_kind", "period_start", "group_kind", "owner_id", "stage_id", "values", "computed_at"
        ),
        key=repr,
    )


def assert_row_count_true(run: MetricsRun) -> None:
    run.refresh_from_db()
    assert run.row_count == MetricSnapshot.objects.filter(run=run).count()


@pytest.mark.django_db
def test_a_full_recompute_leaves_them_to_their_task_which_fills_the_latest_run(history):  # noqa: F811
    run = recompute_metrics(as_of=AS_OF)
    assert history_rows(run) == []

    assert recompute_history_metrics(as_of=AS_OF).pk == run.pk
    rows = history_rows(run)
    assert {row[0] for row in rows} == set(HISTORY)
    assert_row_count_true(run)

    # Again: replaced, not added to.
    recompute_history_metrics(as_of=AS_OF)
    assert history_rows(run) == rows
    assert_row_count_true(run)


@pytest.mark.django_db
def test_the_next_recompute_carries_the_rows_over_as_they_were_computed(history, settings):  # noqa: F811
    settings.METRICS_KEEP_RUNS = 1  # the previous run is pruned in the same transaction
    first = recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)
    rows = history_rows(first)

    second = recompute_metrics(as_of=AS_OF)
    assert second.pk != first.pk and not MetricsRun.objects.filter(pk=first.pk).exists()
    assert history_rows(second) == rows
    assert_row_count_true(second)


@pytest.mark.django_db
def test_the_recompute_task_asks_for_them_only_when_its_run_has_none(history):  # noqa: F811
    with mock.patch.object(tasks.services, "request_history_metrics") as asked:
        tasks.recompute_metrics_task.run(reason="schedule")
        assert asked.call_count == 1
        recompute_history_metrics()
        tasks.recompute_metrics_task.run(reason="schedule")
        assert asked.call_count == 1  # carried over: nothing to ask for


@pytest.mark.django_db(transaction=True)
def test_recompute_and_refresh_go_on_while_they_are_computed_and_a_newer_run_gets_their_rows(org, pipeline, history):  # noqa: F811
    """The history task holds no lock that a recompute or refresh waits for while its families run; a run completed
    meanwhile carries the old rows, then gets the new ones when the task commits."""
    old_run = recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)
    old_rows = history_rows(old_run)
    # Make the history differ, so that the new rows are not the old ones.
    make_deal(owner=org.rep, pipeline=pipeline, amount=123)
    MetricSnapshot.objects.filter(run=old_run, metric__in=HISTORY).update(computed_at=AS_OF.replace(year=2020))
    old_rows = history_rows(old_run)

    inside, release = threading.Event(), threading.Event()
    real = recompute._run_families
    outcome = {}

    def held(cursor, families, params):
        if families is metrics.HISTORY_FAMILIES:
            inside.set()
            assert release.wait(60)
        return real(cursor, families, params)

    def history_task():
        try:
            outcome["run"] = recompute_history_metrics(as_of=AS_OF)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            outcome["error"] = error
        finally:
            connection.close()

    with mock.patch.object(recompute, "_run_families", held):
        worker = threading.Thread(target=history_task)
        worker.start()
        assert inside.wait(60)
        # Both finish while the history families are held in the middle of their transaction.
        assert refresh_metrics(as_of=AS_OF) is not None
        new_run = recompute_metrics(as_of=AS_OF)
        assert new_run is not None and new_run.status == RunStatus.COMPLETE
        assert history_rows(new_run) == old_rows  # carried, as committed so far
        release.set()
        worker.join(60)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["run"].pk == old_run.pk
    fresh = history_rows(old_run)
    assert fresh != old_rows and all(row[7] != AS_OF.replace(year=2020) for row in fresh)
    assert history_rows(new_run) == fresh
    assert_row_count_true(old_run)
    assert_row_count_true(new_run)


@pytest.mark.django_db(transaction=True)
def test_the_task_put_off_by_another_computation_of_them_does_not_queue_itself_again(org, pipeline, history):  # noqa: F811
    from tests.forecasting.test_services import _other_connection

    run = recompute_metrics(as_of=AS_OF)
    with _other_connection() as other, mock.patch.object(tasks.services, "request_history_metrics") as asked:
        other.execute("SELECT pg_advisory_lock(%s)", [recompute.HISTORY_LOCK_KEY])
        assert tasks.recompute_history_metrics_task.run(reason="change") is None
        assert asked.call_count == 0  # the running one finishes the work; asking again would spin for its minutes
    assert history_rows(run) == []
    assert tasks.recompute_history_metrics_task.run(reason="schedule") == run.pk
    assert history_rows(run) != []
