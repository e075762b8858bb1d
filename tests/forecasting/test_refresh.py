"""The incremental refresh: after any changes to deals and activities, it leaves exactly the rows a full recompute
would write (for everything it refreshes), and what records the changes (triggers) and runs it (task, signals)."""

import logging
import math
import re
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection, transaction
from django.test import override_settings
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from accounts.models import User
from forecasting import changes, recompute, services
from forecasting.models import MetricSnapshot, MetricsRun, PendingChange, RunStatus
from forecasting.selectors import latest_run
from forecasting.services import recompute_metrics, refresh_metrics
from pipeline import services as pipeline_services
from pipeline import stage_history
from pipeline.models import Activity, Deal, LostReason, Stage
from tests.factories import make_deal, make_qualified_deal, stage
from tests.forecasting.test_metrics_properties import (
    AS_OF,
    BASE,
    LOOKBACK_DAYS,
    K,
    _build,
    deal_strategy,
    quota_strategy,
    stages_strategy,
)

pytestmark = pytest.mark.django_db

# What a refresh leaves as the full recompute had them (forecasting.metrics.REFRESHED says why), and the forecast
# weighted by the learned probabilities.
# Left to the next full recompute (README, "How fresh the metrics are"), the backtest and calibration among them: over
# ended periods and closed deals, their rows change only when the history of an ended period does.
NOT_REFRESHED = {"learned_probability", "stage_time", "leads", "backtest", "backtest_summary", "calibration"}
NOT_REFRESHED_VALUES = {"forecast": {"weighted_learned", "weighted_learned_exact"}}

change_strategy = st.one_of(
    st.tuples(st.just("move"), st.integers(0, 50), st.one_of(st.integers(0, 3), st.sampled_from(["won", "lost"]))),
    st.tuples(st.just("close_date"), st.integers(0, 50), st.integers(-200, 300)),
    st.tuples(st.just("amount"), st.integers(0, 50), st.integers(0, 10**6)),
    st.tuples(st.just("owner"), st.integers(0, 50), st.integers(0, 2)),
    st.tuples(st.just("plan"), st.integers(0, 50), st.integers(-30, 30)),
    st.tuples(st.just("complete"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("create"), st.integers(0, 3), st.integers(0, 24 * 400)),
    st.tuples(st.just("category"), st.integers(0, 50), st.sampled_from([None, "pipeline", "best_case", "commit"])),
    st.tuples(st.just("delete"), st.integers(0, 50), st.just(0)),
)


def _apply(change) -> None:
    kind, index, value = change
    deals = list(Deal.objects.order_by("id"))
    owners = list(User.objects.order_by("id"))
    if not deals:
        return
    deal = deals[index % len(deals)]
    when = AS_OF - timedelta(hours=1)
    if kind == "move":
        stages = list(Stage.objects.filter(pipeline_id=deal.pipeline_id).order_by("order"))
        open_stages = [s for s in stages if s.kind == "open"]
        target = {"won": stages[-2], "lost": stages[-1]}.get(value) or open_stages[value % len(open_stages)]
        reason = LostReason.objects.first() if target.kind == "lost" else None
        at = max(when, deal.stage_entered_at + timedelta(minutes=1))
        pipeline_services.move_deal(deal=deal, stage=target, actor=None, at=at, lost_reason=reason)
    elif kind == "close_date":
        pipeline_services.update_deal(deal=deal, actor=None, expected_close_date=(AS_OF + timedelta(value)).date())
    elif kind == "amount":
        pipeline_services.update_deal(deal=deal, actor=None, amount=Decimal(value) / 100)
    elif kind == "owner":
        pipeline_services.update_deal(deal=deal, actor=None, owner=owners[value % len(owners)])
    elif kind == "plan":
        pipeline_services.log_activity(
            actor=None, kind="call", subject="Call", deal=deal, owner=deal.owner, due_at=AS_OF + timedelta(value)
        )
    elif kind == "category":
        pipeline_services.update_deal(deal=deal, actor=None, forecast_category_override=value)
    elif kind == "delete":
        deal.delete()
    elif kind == "complete":
        activity = Activity.objects.filter(deal=deal, done_at__isnull=True).first()
        if activity:
            pipeline_services.complete_activity(activity=activity, actor=None, at=when)
    else:
        open_stages = list(Stage.objects.filter(pipeline_id=deal.pipeline_id, kind="open").order_by("order"))
        stage = open_stages[index % len(open_stages)]
        pipeline_services.create_deal(
            actor=None, title="New", owner=deal.owner, pipeline=deal.pipeline, stage=stage,
            created_at=BASE + timedelta(hours=value), amount=Decimal(500),
        )  # fmt: skip


def _rows(run: MetricsRun) -> dict:
    rows = {}
    for row in MetricSnapshot.objects.filter(run=run).exclude(metric__in=NOT_REFRESHED):
        key = (
            row.metric, row.period_kind, row.period_start, row.group_kind, row.owner_id, row.team_id,
            row.pipeline_id, row.source, row.stage_id, row.deal_id,
        )  # fmt: skip
        ignored = NOT_REFRESHED_VALUES.get(row.metric, set())
        rows[key] = {name: value for name, value in row.values.items() if name not in ignored}
    return rows


def _same_values(refreshed: dict, reference: dict) -> bool:
    """Equal, floats to 1e-9: a mean summed in another order may differ in the last bit."""
    return refreshed.keys() == reference.keys() and all(
        math.isclose(value, reference[name], rel_tol=1e-9)
        if isinstance(value, float) and isinstance(reference[name], float)
        else value == reference[name]
        for name, value in refreshed.items()
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # No shrinking: each example builds a database, and shrinking one failure took over five minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    open_stages=stages_strategy,
    deals=st.lists(deal_strategy, min_size=1, max_size=8),
    edits=st.lists(change_strategy, min_size=1, max_size=6),
    quotas=st.lists(quota_strategy, max_size=3),
    tz=st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"]),
)
def test_a_refresh_after_changes_leaves_what_a_full_recompute_writes(open_stages, deals, edits, quotas, tz):
    with (
        override_settings(TIME_ZONE=tz, METRICS_PRIOR_STRENGTH=K, METRICS_LOOKBACK_DAYS=LOOKBACK_DAYS),
        transaction.atomic(),
    ):
        _build(open_stages, deals, leads=[], quotas=quotas)
        run = recompute_metrics(as_of=AS_OF)
        assert not PendingChange.objects.exists()  # the recompute took what building recorded
        for edit in edits:
            _apply(edit)

        assert refresh_metrics(as_of=AS_OF).pk == run.pk
        refreshed = _rows(run)
        reference = _rows(recompute_metrics(as_of=AS_OF))

        assert sorted(refreshed, key=str) == sorted(reference, key=str)
        for key, values in reference.items():
            assert _same_values(refreshed[key], values), (key, refreshed[key], values)
        transaction.set_rollback(True)


def test_changes_to_what_metrics_read_are_recorded_and_nothing_else(org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    assert set(PendingChange.objects.values_list("deal_id", flat=True)) == {deal.pk}
    PendingChange.objects.all().delete()

    # A rename is no change of what metrics date or group by, but a touch (pipeline.touches), which may end the
    # deal's "no activity": the deal alone is recorded, as for an activity, without images (sign 0).
    pipeline_services.update_deal(deal=deal, actor=None, title="Renamed")
    assert list(PendingChange.objects.values_list("deal_id", "pipeline_id", "sign")) == [(deal.pk, None, 0)]
    PendingChange.objects.all().delete()

    before = deal.expected_close_date
    deal = pipeline_services.update_deal(deal=deal, actor=None, expected_close_date=AS_OF.date())
    images = set(PendingChange.objects.exclude(sign=0).values_list("deal_id", "expected_close_date"))
    assert images == {(deal.pk, before), (deal.pk, AS_OF.date())}  # the old and the new values
    PendingChange.objects.all().delete()

    pipeline_services.log_activity(actor=None, kind="call", subject="Call", deal=deal, owner=org.rep, due_at=AS_OF)
    assert list(PendingChange.objects.values_list("deal_id", "pipeline_id")) == [(deal.pk, None)]


def test_a_bulk_load_records_no_changes(org, pipeline):
    with transaction.atomic(), connection.cursor() as cursor, stage_history.bulk_load(cursor):
        make_deal(owner=org.rep, pipeline=pipeline)
    assert not PendingChange.objects.exists()


def test_changes_made_while_a_recompute_runs_stay_pending_for_the_refresh(org, pipeline):
    first = make_deal(owner=org.rep, pipeline=pipeline)
    late = []

    real = recompute._run_families

    def with_a_change_meanwhile(cursor, families, params):
        if not late:
            # Another writer commits while the recompute runs: its pending change is newer than the run's start.
            late.append(make_deal(owner=org.rep, pipeline=pipeline))
        return real(cursor, families, params)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recompute, "_run_families", with_a_change_meanwhile)
        recompute_metrics()
    assert set(PendingChange.objects.values_list("deal_id", flat=True)) == {late[0].pk}
    assert first.pk not in PendingChange.objects.values_list("deal_id", flat=True)


def test_changes_made_while_a_refresh_runs_stay_pending_for_the_next_one(org, pipeline):
    recompute_metrics(as_of=AS_OF)
    first = make_deal(owner=org.rep, pipeline=pipeline)
    late = []
    real = changes.Slices.of_changes

    def with_a_change_meanwhile(cursor, taken):
        slices = real(cursor, taken)
        # Another writer commits once the refresh has read the queue: its change is not among those taken.
        late.append(make_deal(owner=org.rep, pipeline=pipeline))
        return slices

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(changes.Slices, "of_changes", with_a_change_meanwhile)
        refresh_metrics(as_of=AS_OF)
    assert set(PendingChange.objects.values_list("deal_id", flat=True)) == {late[0].pk}

    def stale() -> set[int]:
        return set(MetricSnapshot.objects.filter(metric="stale").values_list("deal_id", flat=True))

    assert stale() == {first.pk}  # the next refresh brings the late deal in
    refresh_metrics(as_of=AS_OF)
    assert not PendingChange.objects.exists() and stale() == {first.pk, late[0].pk}


def test_a_change_committed_inside_a_gap_of_the_queue_stays_pending(org, pipeline):
    """A writer that took its id before others but commits after the recompute read the queue leaves a gap there:
    the recompute takes the runs of ids around it and not the late change."""
    for deal in (make_deal(owner=org.rep, pipeline=pipeline), make_deal(owner=org.rep, pipeline=pipeline)):
        PendingChange.objects.create(deal_id=deal.pk)
    ids = sorted(PendingChange.objects.values_list("id", flat=True))
    late_id = ids[-1] + 1
    after_gap = PendingChange.objects.create(id=late_id + 1, deal_id=ids[0])
    with connection.cursor() as cursor:
        taken = recompute._pending_change_runs(cursor)
    assert taken[-1] == (after_gap.pk, after_gap.pk)
    assert all(first <= last for first, last in taken)
    assert sum(last - first + 1 for first, last in taken) == PendingChange.objects.count()
    # The late writer commits now, inside the gap.
    PendingChange.objects.create(id=late_id, deal_id=ids[0])
    with connection.cursor() as cursor:
        recompute._complete_run(cursor, recompute._start_run(AS_OF)[0], rows=0, started=0.0, consumed=taken)
    assert list(PendingChange.objects.values_list("id", flat=True)) == [late_id]


def test_a_refresh_before_any_recompute_does_nothing_and_the_task_asks_for_a_full_one(org, pipeline, monkeypatch):
    make_deal(owner=org.rep, pipeline=pipeline)
    asked = []
    monkeypatch.setattr(services, "request_recompute", lambda: asked.append("recompute"))
    from forecasting.tasks import refresh_metrics_task

    assert refresh_metrics() is None
    assert refresh_metrics_task.run(reason="schedule") is None
    assert asked == ["recompute"]
    assert PendingChange.objects.exists()  # kept for the recompute


def test_a_refresh_stamps_the_run_and_readers_see_it_as_fresh(org, pipeline):
    run = recompute_metrics(as_of=AS_OF - timedelta(hours=2))
    make_deal(owner=org.rep, pipeline=pipeline)
    refreshed = refresh_metrics(as_of=AS_OF)
    assert refreshed.pk == run.pk
    refreshed.refresh_from_db()
    assert refreshed.refreshed_at == AS_OF == refreshed.as_of
    assert refreshed.status == RunStatus.COMPLETE
    assert refreshed.row_count == MetricSnapshot.objects.filter(run=refreshed).count()
    assert not PendingChange.objects.exists()


def test_a_refresh_logs_the_rows_and_seconds_of_each_family_it_rewrites(org, pipeline, caplog):
    recompute_metrics(as_of=AS_OF - timedelta(hours=2))
    make_deal(owner=org.rep, pipeline=pipeline)
    with caplog.at_level(logging.INFO, logger="forecasting.recompute"):
        refresh_metrics(as_of=AS_OF)
    assert re.search(r"metrics refresh stale_deals: 1 rows in [\d.]+ s", caplog.text)


SLICE_COLUMNS = (
    "deal_id", "pipeline_id", "owner_id", "source", "status", "amount", "furthest_open_order", "created_at",
    "closed_at", "expected_close_date", "sign",
)  # fmt: skip


def _slices_of(rows: list[tuple]) -> changes.Slices:
    """The slices of pending changes with these values (`SLICE_COLUMNS`), as a refresh reads them: in SQL."""
    PendingChange.objects.all().delete()
    PendingChange.objects.bulk_create([PendingChange(**dict(zip(SLICE_COLUMNS, row, strict=True))) for row in rows])
    with connection.cursor() as cursor:
        return changes.Slices.of_changes(cursor, recompute._pending_change_runs(cursor))


def test_slices_cover_each_period_of_every_old_and_new_date():
    from datetime import UTC, date, datetime

    slices = _slices_of(
        [
            (7, 1, 5, "web", "open", 10, 2, datetime(2026, 2, 3, tzinfo=UTC), None, date(2026, 5, 30), -1),
            (
                7,
                1,
                6,
                "web",
                "won",
                10,
                2,
                datetime(2026, 2, 3, tzinfo=UTC),
                datetime(2026, 11, 2, tzinfo=UTC),
                None,
                1,
            ),
        ]
    )
    assert slices.closed == {("month", date(2026, 11, 1)), ("quarter", date(2026, 10, 1)), ("year", date(2026, 1, 1))}
    assert ("quarter", date(2026, 4, 1)) in slices.expected
    assert ("month", date(2026, 2, 1)) in slices.created
    assert (slices.any_deal, slices.pipelines, slices.owners) == (True, {1}, {5, 6})
    assert slices.period_names() == ["2026", "2026-02", "2026-05", "2026-11", "2026-Q1", "2026-Q2", "2026-Q4"]


def test_a_deal_expected_to_close_in_the_last_month_a_date_can_hold_is_refreshed_like_any_other():
    from datetime import date

    slices = _slices_of([(7, 1, 5, "web", "open", 10, 2, None, None, date(9999, 12, 31), 0)])
    assert slices.expected == {("month", date(9999, 12, 1)), ("quarter", date(9999, 10, 1)), ("year", date(9999, 1, 1))}
    assert slices.period_names() == ["9999", "9999-12", "9999-Q4"]


def test_a_move_that_leaves_a_deal_where_it_was_in_the_funnels_refreshes_no_funnel():
    from datetime import UTC, date, datetime

    created = datetime(2026, 2, 3, tzinfo=UTC)
    back_one_stage = _slices_of(
        [
            (7, 1, 5, "web", "open", 10, 4, created, None, date(2026, 5, 30), -1),
            (7, 1, 5, "web", "open", 10, 4, created, None, date(2026, 5, 30), 1),
        ]
    )
    assert (back_one_stage.pipelines, back_one_stage.created, back_one_stage.owners) == (set(), set(), set())
    assert not back_one_stage.touches("past_due") and not back_one_stage.touches("quota")
    assert back_one_stage.expected  # its forecast still is refreshed (the stage's probability changed)
    further = _slices_of(
        [
            (7, 1, 5, "web", "open", 10, 4, created, None, date(2026, 5, 30), -1),
            (7, 1, 5, "web", "open", 10, 5, created, None, date(2026, 5, 30), 1),
        ]
    )
    assert further.pipelines == {1} and ("month", date(2026, 2, 1)) in further.created


# --- The forecast's differences (forecasting.metrics.forecast_differences) ----------------------------------------


@pytest.fixture
def book(org, pipeline):
    """Open deals of both teams expected to close around a year's end, at amounts that weigh to fractions of a cent,
    recomputed AS_OF."""
    deals = [
        make_qualified_deal(
            owner=owner, pipeline=pipeline, stage=stage(pipeline, name), amount=Decimal(amount), expected_close_date=day
        )
        for owner, name, amount, day in [
            (org.rep, "Proposal", "1000.05", "2027-12-30"),
            (org.rep, "Qualification", "333.33", "2027-12-31"),
            (org.other_rep, "Discovery", "10.01", "2028-01-02"),
            (org.teammate, "Negotiation", "7.77", "2027-11-15"),
        ]
    ]
    recompute_metrics(as_of=AS_OF)
    return deals


def _refreshed_as_recomputed(caplog, *, differences: bool = True, family: str = "forecast") -> None:
    """Refresh, check whether `family` was patched with differences, and compare every row with a recompute's."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="forecasting.recompute"):
        run = refresh_metrics(as_of=AS_OF)
    assert run is not None
    patched = re.search(rf"metrics refresh {family}: \d+ rows in [\d.]+ s \(\d+ differences", caplog.text)
    assert bool(patched) is differences
    refreshed = _rows(run)
    reference = _rows(recompute_metrics(as_of=AS_OF))
    assert sorted(refreshed, key=str) == sorted(reference, key=str)
    for key, values in reference.items():
        assert _same_values(refreshed[key], values), (key, refreshed[key], values)


def test_a_move_and_a_close_date_across_a_year_end_are_applied_as_differences(book, pipeline, caplog):
    pipeline_services.move_deal(deal=book[0], stage=stage(pipeline, "Negotiation"), actor=None)
    pipeline_services.update_deal(deal=book[0], actor=None, expected_close_date=AS_OF.date().replace(year=2028))
    _refreshed_as_recomputed(caplog)


def test_an_owner_changed_across_teams_is_applied_as_differences(book, org, caplog):
    pipeline_services.update_deal(deal=book[2], actor=None, owner=org.rep)
    _refreshed_as_recomputed(caplog)


def test_a_deleted_deal_is_taken_out_and_its_emptied_rows_removed(book, org, caplog):
    book[2].delete()  # other_rep's only deal: its owner, and its team's, rows of 2028 go
    _refreshed_as_recomputed(caplog)
    assert not MetricSnapshot.objects.filter(metric="forecast", owner_id=org.other_rep.pk).exists()


def test_an_amount_edit_and_a_win_are_applied_as_differences(book, pipeline, caplog):
    pipeline_services.update_deal(deal=book[1], actor=None, amount=Decimal("0.03"))
    pipeline_services.move_deal(deal=book[3], stage=stage(pipeline, "Won"), actor=None, at=AS_OF - timedelta(hours=1))
    _refreshed_as_recomputed(caplog)


def test_an_image_recorded_before_the_stage_was_in_it_has_its_periods_recomputed(book, pipeline, caplog):
    pipeline_services.move_deal(deal=book[1], stage=stage(pipeline, "Proposal"), actor=None)
    PendingChange.objects.update(stage_id=None, forecast_category=None)  # as the trigger before migration 0011
    _refreshed_as_recomputed(caplog, differences=False)


def test_rows_written_without_the_exact_sums_have_their_periods_recomputed(book, pipeline, caplog):
    with connection.cursor() as cursor:  # as a run computed before the sums were kept, in book[1]'s periods
        cursor.execute(
            'UPDATE forecasting_metricsnapshot SET "values" = "values" - \'weighted_configured_exact\''
            " WHERE metric = 'forecast' AND period_start IN ('2027-12-01', '2027-10-01', '2027-01-01')"
        )
    pipeline_services.move_deal(deal=book[1], stage=stage(pipeline, "Proposal"), actor=None)
    _refreshed_as_recomputed(caplog, differences=False)


def test_a_stage_probability_changed_with_a_move_pending_is_left_to_a_full_recompute(book, pipeline):
    run = latest_run()
    pipeline_services.move_deal(deal=book[1], stage=stage(pipeline, "Proposal"), actor=None)
    pipeline_services.update_stage(stage=stage(pipeline, "Proposal"), actor=None, probability=65)
    before = {row.pk: row.values for row in MetricSnapshot.objects.filter(run=run, metric="forecast")}
    assert refresh_metrics(as_of=AS_OF) is None
    assert not services.configuration_is_current()
    assert {row.pk: row.values for row in MetricSnapshot.objects.filter(run=run, metric="forecast")} == before
    assert PendingChange.objects.filter(deal_id=book[1].pk).exists()


def test_a_deal_reaching_a_further_stage_and_a_win_are_applied_to_the_funnel_as_differences(book, pipeline, caplog):
    pipeline_services.move_deal(deal=book[1], stage=stage(pipeline, "Negotiation"), actor=None)
    pipeline_services.move_deal(deal=book[2], stage=stage(pipeline, "Won"), actor=None, at=AS_OF - timedelta(hours=1))
    _refreshed_as_recomputed(caplog, family="funnel")


def test_a_new_deal_of_a_new_cohort_and_group_makes_its_funnel_rows_and_its_delete_removes_them(
    book, org, pipeline, caplog
):
    lone = make_qualified_deal(owner=org.admin, pipeline=pipeline, source="referral", created_at=AS_OF - timedelta(400))
    _refreshed_as_recomputed(caplog, family="funnel")
    assert MetricSnapshot.objects.filter(metric="funnel", owner_id=org.admin.pk).exists()
    lone.delete()
    _refreshed_as_recomputed(caplog, family="funnel")
    assert not MetricSnapshot.objects.filter(metric="funnel", owner_id=org.admin.pk).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("connections", [1, 2])
def test_a_change_committed_while_a_recompute_runs_is_counted_once(org, pipeline, settings, connections, caplog):
    """Committed after the recompute read the queue but before its forecast and funnel statements: the run reads the
    deals in the queue's snapshot, so the change is the refresh's to add, and only the refresh's."""
    settings.METRICS_CONNECTIONS = connections
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("100.00"))
    real = recompute._run_families
    done = []

    def with_a_change_meanwhile(cursor, families, params):
        if not done:
            done.append(True)
            negotiation = stage(pipeline, "Negotiation")
            db = connection.get_connection_params()
            with psycopg.connect(**{k: v for k, v in db.items() if k not in {"cursor_factory", "context"}}) as other:
                other.execute(
                    "UPDATE pipeline_deal SET amount = 250.55, stage_id = %s, furthest_open_order = %s,"
                    " forecast_category = 'commit' WHERE id = %s",
                    [negotiation.pk, negotiation.order, deal.pk],
                )
        return real(cursor, families, params)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recompute, "_run_families", with_a_change_meanwhile)
        run = recompute_metrics(as_of=AS_OF)
    assert run is not None and done
    assert PendingChange.objects.filter(deal_id=deal.pk, sign=1, amount=Decimal("250.55")).exists()
    _refreshed_as_recomputed(caplog)
    assert re.search(r"metrics refresh funnel: \d+ rows in [\d.]+ s \(\d+ differences", caplog.text)


def test_a_burst_beyond_the_differences_limit_recomputes_the_slices_and_leaves_what_a_full_recompute_writes(
    org, pipeline, monkeypatch, caplog
):
    """Past `DIFFERENCES_LIMIT` deal images (an import, a bulk edit) the forecast and the funnel are recomputed for
    their slices like the other families, not patched: with the limit at 3, four changed deals (eight images)."""
    deals = [
        make_qualified_deal(owner=owner, pipeline=pipeline, amount=Decimal(amount), expected_close_date=AS_OF.date())
        for owner, amount in ((org.rep, 1000), (org.teammate, 2500), (org.other_rep, 400), (org.rep, 90))
    ]
    run = recompute_metrics(as_of=AS_OF - timedelta(hours=2))
    for deal, amount in zip(deals, (1500, 100, 7000, 90_000), strict=True):
        pipeline_services.update_deal(deal=deal, actor=None, amount=Decimal(amount))
    monkeypatch.setattr(recompute, "DIFFERENCES_LIMIT", 3)
    with caplog.at_level(logging.INFO, logger="forecasting.recompute"):
        assert refresh_metrics(as_of=AS_OF).pk == run.pk
    assert "differences" not in caplog.text  # no family was patched
    assert re.search(r"metrics refresh forecast: \d+ rows in [\d.]+ s \(\d+ replaced\)", caplog.text)
    refreshed = _rows(run)
    reference = _rows(recompute_metrics(as_of=AS_OF))
    assert sorted(refreshed, key=str) == sorted(reference, key=str)
    for key, values in reference.items():
        assert _same_values(refreshed[key], values), (key, refreshed[key], values)
