"""The recompute as a whole (one complete run per recompute, pruning, the advisory lock, the debounce) and the
quota writes."""

import datetime as dt
import logging
import re
import threading
from decimal import Decimal
from unittest import mock

import psycopg
import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import override_settings
from kombu.exceptions import OperationalError as BrokerError

from accounts.models import AuditEntry
from forecasting import recompute, selectors, services
from forecasting.models import MetricSnapshot, MetricsRun, PendingChange, Quota, RunStatus
from forecasting.recompute import RECOMPUTE_LOCK_KEY
from forecasting.services import recompute_metrics, request_recompute
from tests.factories import make_deal
from tests.forecasting.helpers import latest_rows


def _other_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    return psycopg.connect(**{key: value for key, value in params.items() if key not in {"cursor_factory", "context"}})


@pytest.mark.django_db
def test_a_recompute_writes_one_complete_run_and_stamps_every_row(org, pipeline):
    make_deal(owner=org.rep, pipeline=pipeline)
    run = recompute_metrics()
    assert run.status == RunStatus.COMPLETE
    assert run.row_count == MetricSnapshot.objects.filter(run=run).count() > 0
    assert set(MetricSnapshot.objects.filter(run=run).values_list("computed_at", flat=True)) == {run.computed_at}


@pytest.mark.django_db
def test_old_runs_are_pruned_keeping_the_newest(org, pipeline, settings):
    settings.METRICS_KEEP_RUNS = 2
    make_deal(owner=org.rep, pipeline=pipeline)
    first, second, third = recompute_metrics(), recompute_metrics(), recompute_metrics()
    assert list(MetricsRun.objects.values_list("pk", flat=True)) == [third.pk, second.pk]
    assert not MetricSnapshot.objects.filter(run=first).exists()
    assert latest_rows("past_due", group_kind="company")[0].run_id == third.pk


@pytest.mark.django_db(transaction=True)
def test_a_recompute_while_another_holds_the_lock_returns_none_and_changes_nothing(org, pipeline):
    before = recompute_metrics()
    with _other_connection() as other:
        other.execute("SELECT pg_advisory_lock(%s)", [RECOMPUTE_LOCK_KEY])
        assert recompute_metrics() is None
        other.execute("SELECT pg_advisory_unlock(%s)", [RECOMPUTE_LOCK_KEY])
    assert list(MetricsRun.objects.values_list("pk", flat=True)) == [before.pk]
    assert recompute_metrics() is not None


@pytest.mark.django_db(transaction=True)
def test_two_recomputes_at_once_never_interleave(org, pipeline, settings):
    settings.METRICS_KEEP_RUNS = 10
    for _ in range(5):
        make_deal(owner=org.rep, pipeline=pipeline)
    start = threading.Barrier(2)
    results, errors = [], []

    def recompute():
        try:
            start.wait()
            for _ in range(5):
                results.append(recompute_metrics())
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=recompute) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    runs = [run for run in results if run is not None]
    assert runs
    # Every committed run is complete and whole: exactly as many rows as the first run wrote.
    counts = {run.pk: MetricSnapshot.objects.filter(run_id=run.pk).count() for run in runs}
    assert set(counts.values()) == {runs[0].row_count}
    assert MetricsRun.objects.exclude(status=RunStatus.COMPLETE).count() == 0


@pytest.mark.django_db
def test_a_failing_recompute_leaves_the_last_complete_run_in_place(org, pipeline):
    make_deal(owner=org.rep, pipeline=pipeline)
    before = recompute_metrics()
    with (
        mock.patch("forecasting.metrics.leads", side_effect=RuntimeError("killed")),
        mock.patch("forecasting.metrics.FAMILIES", [recompute.metrics.deal_outcomes, recompute.metrics.leads]),
        pytest.raises(RuntimeError),
    ):
        recompute_metrics()
    assert list(MetricsRun.objects.values_list("pk", flat=True)) == [before.pk]
    assert MetricSnapshot.objects.filter(run=before).count() == before.row_count


def _rows(run: MetricsRun) -> list[tuple]:
    return sorted(
        (
            MetricSnapshot.objects.filter(run=run).values_list(
                "metric",
                "period_kind",
                "period_start",
                "group_kind",
                "owner_id",
                "team_id",
                "pipeline_id",
                "source",
                "stage_id",
                "deal_id",
                "values",
                "computed_at",
            )
        ),
        key=repr,
    )


def _some_history(org, pipeline, lost_reason) -> None:
    from tests.forecasting.helpers import deal_with_history

    for n, (owner, path) in enumerate(
        [
            (org.rep, [("Prospecting", "2026-01-05 10:00"), ("Discovery", "2026-01-20 10:00"), ("Won", "2026-02-03")]),
            (org.teammate, [("Qualification", "2026-01-09 10:00"), ("Lost", "2026-03-01 10:00")]),
            (org.other_rep, [("Prospecting", "2026-02-11 10:00"), ("Proposal", "2026-02-20 10:00")]),
            (org.rep, [("Discovery", "2025-12-30 23:00"), ("Prospecting", "2026-01-02 10:00")]),
        ]
    ):
        deal_with_history(
            owner=owner,
            pipeline=pipeline,
            path=path,
            lost_reason=lost_reason,
            amount=Decimal(1000 * (n + 1)),
            expected_close_date=dt.date(2026, 3, 31),
        )


@pytest.mark.django_db(transaction=True)
def test_a_recompute_on_two_connections_writes_exactly_what_one_transaction_writes(
    org, pipeline, lost_reason, settings
):
    _some_history(org, pipeline, lost_reason)
    as_of = dt.datetime(2026, 3, 15, 12, tzinfo=dt.UTC)
    settings.METRICS_CONNECTIONS = 1
    serial = recompute_metrics(as_of=as_of)
    settings.METRICS_CONNECTIONS = 2
    parallel = recompute_metrics(as_of=as_of)

    assert parallel.status == RunStatus.COMPLETE
    assert parallel.row_count == serial.row_count > 0
    assert _rows(parallel) == _rows(serial)
    assert selectors.latest_run().pk == parallel.pk


@pytest.mark.django_db(transaction=True)
def test_a_failing_unit_on_two_connections_leaves_no_trace_and_the_last_run_in_place(org, pipeline, settings):
    make_deal(owner=org.rep, pipeline=pipeline)
    settings.METRICS_CONNECTIONS = 2
    before = recompute_metrics()
    killed = mock.Mock(side_effect=RuntimeError("killed"), __name__="leads")
    with (
        mock.patch("forecasting.recompute.UNITS", [(recompute.metrics.funnel,), (killed,)]),
        pytest.raises(RuntimeError),
    ):
        recompute_metrics()
    assert list(MetricsRun.objects.values_list("pk", flat=True)) == [before.pk]
    assert MetricSnapshot.objects.exclude(run=before).count() == 0
    assert recompute_metrics() is not None  # the lock was released


def test_the_units_of_a_parallel_recompute_cover_every_family_and_the_copy_of_the_history_rows():
    families = [getattr(family, "family", family) for unit in recompute.UNITS for family in unit]
    assert set(families) == {*recompute.metrics.FAMILIES, recompute.carry_history_rows}
    assert families.count(recompute.carry_history_rows) == 1


# The line config/bench/harness.py reads each family's seconds from, in the worker's log (its total line aside).
BENCH_FAMILY_LINE = re.compile(r"metrics ([\w\[\], ]+?): (\d+) rows in ([\d.]+) s")


def _timed_in_log(text: str) -> set[str]:
    return {m.group(1) for m in BENCH_FAMILY_LINE.finditer(text) if not m.group(1).startswith("recompute ")}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("connections", [1, 2])
def test_each_family_and_part_logs_its_rows_and_seconds_as_the_bench_reads_them(
    org, pipeline, settings, caplog, connections
):
    make_deal(owner=org.rep, pipeline=pipeline)
    settings.METRICS_CONNECTIONS = connections
    with caplog.at_level(logging.INFO, logger="forecasting.recompute"):
        recompute_metrics()
    plan = [recompute.metrics.FAMILIES] if connections == 1 else recompute.UNITS
    assert _timed_in_log(caplog.text) == {family.__name__ for unit in plan for family in unit}


@pytest.fixture
def no_pending_mark():
    cache.delete_many([services.PENDING_RECOMPUTE_CACHE_KEY, services.PENDING_REFRESH_CACHE_KEY])
    yield
    cache.delete_many([services.PENDING_RECOMPUTE_CACHE_KEY, services.PENDING_REFRESH_CACHE_KEY])


@pytest.mark.django_db
def test_deal_changes_queue_at_most_one_pending_refresh(
    org, pipeline, no_pending_mark, settings, django_capture_on_commit_callbacks
):
    settings.METRICS_RECOMPUTE_ON_CHANGE = True
    with (
        mock.patch("forecasting.tasks.refresh_metrics_task.apply_async") as refresh,
        mock.patch("forecasting.tasks.recompute_metrics_task.apply_async") as recompute,
    ):
        with django_capture_on_commit_callbacks(execute=True):
            make_deal(owner=org.rep, pipeline=pipeline)
            make_deal(owner=org.rep, pipeline=pipeline)
        assert (refresh.call_count, recompute.call_count) == (1, 0)
        assert refresh.call_args.kwargs["countdown"] == settings.METRICS_REFRESH_DELAY_SECONDS
        services.clear_pending_refresh()  # what the task does when it starts
        assert services.request_refresh() is True
        assert refresh.call_count == 2


@pytest.mark.django_db
def test_lead_changes_queue_at_most_one_pending_recompute(
    org, pipeline, no_pending_mark, settings, django_capture_on_commit_callbacks
):
    from pipeline.services import create_lead

    settings.METRICS_RECOMPUTE_ON_CHANGE = True
    with mock.patch("forecasting.tasks.recompute_metrics_task.apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=True):
            create_lead(actor=None, owner=org.rep, last_name="One")
            create_lead(actor=None, owner=org.rep, last_name="Two")
        assert apply_async.call_count == 1
        assert apply_async.call_args.kwargs["countdown"] == settings.METRICS_DEBOUNCE_SECONDS
        assert apply_async.call_args.kwargs["expires"] > settings.METRICS_DEBOUNCE_SECONDS
        services.clear_pending_recompute()  # what the task does when it starts
        assert request_recompute() is True
        assert apply_async.call_count == 2


@pytest.mark.django_db
def test_redis_down_does_not_break_writes(
    org, pipeline, no_pending_mark, settings, django_capture_on_commit_callbacks, caplog
):
    settings.METRICS_RECOMPUTE_ON_CHANGE = True
    unreachable = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    with (
        mock.patch("forecasting.tasks.refresh_metrics_task.apply_async") as apply_async,
        override_settings(CACHES=unreachable),
        django_capture_on_commit_callbacks(execute=True),
    ):
        deal = make_deal(owner=org.rep, pipeline=pipeline)
    assert deal.pk
    assert "could not mark a pending metrics refresh" in caplog.text
    # Nothing is lost: the change waits in PostgreSQL for the scheduled refresh.
    assert PendingChange.objects.filter(deal_id=deal.pk).exists()
    assert apply_async.call_count == 0


@pytest.mark.django_db
def test_broker_down_is_logged_and_clears_the_pending_mark(org, pipeline, no_pending_mark, caplog):
    with mock.patch("forecasting.tasks.recompute_metrics_task.apply_async", side_effect=BrokerError("down")):
        assert request_recompute() is False
    assert "could not queue a metrics recompute" in caplog.text
    assert cache.get(services.PENDING_RECOMPUTE_CACHE_KEY) is None


def test_the_full_recompute_is_scheduled_and_expires_after_one_and_a_half_intervals(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["metrics-recompute"]
    assert entry["task"] == "forecasting.recompute_metrics"
    assert entry["schedule"] == settings.METRICS_RECOMPUTE_SECONDS
    assert entry["options"]["expires"] == settings.METRICS_RECOMPUTE_SECONDS * 1.5


def test_the_refresh_is_scheduled_too_so_changes_left_pending_are_taken(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["metrics-refresh"]
    assert entry["task"] == "forecasting.refresh_metrics"
    assert entry["schedule"] == settings.METRICS_REFRESH_SECONDS
    assert entry["options"]["expires"] == settings.METRICS_REFRESH_SECONDS * 1.5


def test_every_scheduled_task_expires_one_and_a_half_intervals_after_it_is_due(settings):
    # After an outage the worker must not chew through a backlog of stale runs (see config.celery.scheduled).
    assert settings.CELERY_BEAT_SCHEDULE
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["options"]["expires"] == entry["schedule"] * 1.5, name


# --- Quotas -------------------------------------------------------------------------------------------------------

QUARTER = {"period_start": dt.date(2026, 10, 1), "period_end": dt.date(2027, 1, 1)}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"amount": Decimal(1)}, {"user", "team"}),
        ({"user": "rep", "team": "team", "amount": Decimal(1)}, {"user", "team"}),
        ({"user": "rep", "amount": Decimal(-1)}, {"amount"}),
        ({"user": "rep", "amount": Decimal(1), "period_end": dt.date(2026, 9, 30)}, {"period_end"}),
    ],
)
def test_create_quota_refuses_a_broken_rule_with_a_message_per_field(org, fields, errors):
    holders = {"rep": org.rep, "team": org.team}
    fields = QUARTER | {key: holders.get(value, value) for key, value in fields.items()}
    with pytest.raises(ValidationError) as refused:
        services.create_quota(actor=org.admin, **fields)
    assert set(refused.value.message_dict) == errors
    assert not Quota.objects.exists()


@pytest.mark.django_db
def test_quota_writes_leave_an_audit_trail_and_an_unchanged_update_none(org):
    quota = services.create_quota(actor=org.admin, user=org.rep, amount=Decimal(100), **QUARTER)
    services.update_quota(quota=quota, actor=org.admin, amount=Decimal("100.00"))
    services.update_quota(quota=quota, actor=org.manager, amount=Decimal(250))
    quota_id = quota.pk
    services.delete_quota(quota=quota, actor=org.admin)
    trail = AuditEntry.objects.filter(object_id=quota_id, content_type__model="quota").order_by("at", "id")
    assert [(entry.action, entry.actor_id) for entry in trail] == [
        ("created", org.admin.pk),
        ("updated", org.manager.pk),
        ("deleted", org.admin.pk),
    ]
    assert trail[1].changes == {"amount": ["100.00", "250.00"]}


@pytest.mark.django_db
def test_update_quota_refuses_fields_it_does_not_own(org):
    quota = services.create_quota(actor=org.admin, team=org.team, amount=Decimal(1), **QUARTER)
    with pytest.raises(ValidationError) as refused:
        services.update_quota(quota=quota, actor=org.admin, created_at=None)
    assert set(refused.value.message_dict) == {"created_at"}


@pytest.mark.django_db
def test_who_may_change_which_quota(org):
    rep_quota = services.create_quota(actor=org.admin, user=org.rep, amount=Decimal(1), **QUARTER)
    team_quota = services.create_quota(actor=org.admin, team=org.team, amount=Decimal(1), **QUARTER)
    own_quota = services.create_quota(actor=org.admin, user=org.manager, amount=Decimal(1), **QUARTER)
    other_quota = services.create_quota(actor=org.admin, team=org.other_team, amount=Decimal(1), **QUARTER)
    editable = lambda user: set(selectors.editable_quotas(user=user))  # noqa: E731
    assert editable(org.admin) == {rep_quota, team_quota, own_quota, other_quota}
    assert editable(org.manager) == {rep_quota, team_quota}
    assert editable(org.other_manager) == {other_quota}
    assert editable(org.rep) == set()
    assert set(selectors.quota_users_assignable_by(user=org.manager)) == {org.rep, org.teammate}
    assert set(selectors.quota_teams_assignable_by(user=org.manager)) == {org.team}
