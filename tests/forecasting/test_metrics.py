"""Hand-computed fixtures for every shipped metric family (SPEC §3), through a real recompute."""

import dataclasses
import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from forecasting import metrics
from forecasting.metrics import MetricParams, Scope, result_keys
from forecasting.models import ForecastSnapshot, Metric, MetricSnapshot, Quota
from forecasting.services import recompute_history_metrics, recompute_metrics
from pipeline import services
from tests.factories import leave_untouched, stage
from tests.forecasting.helpers import at, deal_with_history, latest_rows, money, one

pytestmark = pytest.mark.django_db

OCT = {"period_kind": "month", "period_start": dt.date(2026, 10, 1)}
NOV = {"period_kind": "month", "period_start": dt.date(2026, 11, 1)}
Q4 = {"period_kind": "quarter", "period_start": dt.date(2026, 10, 1)}
Y2026 = {"period_kind": "year", "period_start": dt.date(2026, 1, 1)}
AS_OF = at("2026-11-25 12:00")


# --- Win rate, average won deal size, sales cycle ------------------------------------------------------------------


@pytest.fixture
def october_closings(org, pipeline, lost_reason):
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("1000"),
        path=[("Prospecting", "2026-10-01"), ("Won", "2026-10-11")],
    )
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("2001"),
        path=[("Prospecting", "2026-10-05"), ("Won", "2026-10-25")],
    )
    deal_with_history(
        owner=org.other_rep,
        pipeline=pipeline,
        lost_reason=lost_reason,
        path=[("Prospecting", "2026-10-01"), ("Lost", "2026-10-04")],
    )
    deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-10-01")])  # open: not closed
    deal_with_history(
        owner=org.other_rep,
        pipeline=pipeline,
        amount=Decimal("500"),
        path=[("Prospecting", "2026-11-01"), ("Won", "2026-11-03")],
    )


def test_win_rate_average_size_and_cycle_over_deals_closed_in_the_month(october_closings):
    recompute_metrics(as_of=AS_OF)
    october = one("deal_outcomes", group_kind="company", **OCT)
    assert (october["won"], october["lost"]) == (2, 1)
    assert october["win_rate"] == pytest.approx(2 / 3)
    assert money(october["avg_won_amount"]) == Decimal("1500.50")
    assert money(october["won_amount"]) == Decimal("3001.00")
    assert october["won_cycle_days_mean"] == pytest.approx(15)
    assert october["won_cycle_days_median"] == pytest.approx(15)
    assert october["lost_cycle_days_mean"] == pytest.approx(3)
    assert october["lost_cycle_days_median"] == pytest.approx(3)

    quarter = one("deal_outcomes", group_kind="company", **Q4)
    assert (quarter["won"], quarter["lost"]) == (3, 1)
    assert quarter["won_cycle_days_median"] == pytest.approx(10)
    assert one("deal_outcomes", group_kind="company", **Y2026)["won"] == 3


def test_win_rate_per_owner_team_pipeline_and_source(org, october_closings, pipeline):
    recompute_metrics(as_of=AS_OF)
    assert one("deal_outcomes", group_kind="owner", owner_id=org.rep.pk, **OCT)["win_rate"] == 1.0
    assert one("deal_outcomes", group_kind="owner", owner_id=org.other_rep.pk, **OCT)["win_rate"] == 0.0
    assert one("deal_outcomes", group_kind="team", team_id=org.team.pk, **OCT)["won"] == 2
    assert one("deal_outcomes", group_kind="team", team_id=org.other_team.pk, **OCT)["lost"] == 1
    assert one("deal_outcomes", group_kind="pipeline", pipeline_id=pipeline.pk, **OCT)["won"] == 2
    assert one("deal_outcomes", group_kind="source", source="", **OCT)["lost"] == 1


def test_a_period_with_only_losses_has_no_average_won_size_and_an_empty_one_no_row(org, pipeline, lost_reason):
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        lost_reason=lost_reason,
        path=[("Prospecting", "2026-10-01"), ("Lost", "2026-10-02")],
    )
    recompute_metrics(as_of=AS_OF)
    october = one("deal_outcomes", group_kind="company", **OCT)
    assert october["win_rate"] == 0.0
    assert october["avg_won_amount"] is None
    assert october["won_cycle_days_mean"] is None
    assert latest_rows("deal_outcomes", group_kind="company", **NOV) == []  # nothing closed: win rate null


def test_a_reopened_deal_counts_only_where_it_closed_last(org, pipeline):
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        path=[
            ("Prospecting", "2026-09-01"),
            ("Won", "2026-10-10"),
            ("Negotiation", "2026-11-02"),
            ("Won", "2026-12-01"),
        ],
    )
    recompute_metrics(as_of=at("2026-12-02 00:00"))
    assert latest_rows("deal_outcomes", group_kind="company", **OCT) == []
    december = one("deal_outcomes", group_kind="company", period_kind="month", period_start=dt.date(2026, 12, 1))
    assert december["won"] == 1
    assert december["won_cycle_days_mean"] == pytest.approx(91)


def test_periods_are_taken_in_the_configured_time_zone(org, pipeline, settings):
    settings.TIME_ZONE = "America/New_York"
    # 03:30 UTC on 1 November is 23:30 on 31 October in New York (EDT, UTC−4).
    deal_with_history(
        owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-10-01"), ("Won", "2026-11-01 03:30")]
    )
    # 04:30 UTC on 1 January 2027 is 23:30 on 31 December 2026 in New York (EST, UTC−5).
    deal_with_history(
        owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-10-01"), ("Won", "2027-01-01 04:30")]
    )
    recompute_metrics(as_of=at("2027-01-02 00:00"))
    assert one("deal_outcomes", group_kind="company", **OCT)["won"] == 1
    assert latest_rows("deal_outcomes", group_kind="company", **NOV) == []
    assert one("deal_outcomes", group_kind="company", **Y2026)["won"] == 2
    december = one("deal_outcomes", group_kind="company", period_kind="month", period_start=dt.date(2026, 12, 1))
    assert december["won"] == 1


# --- Funnel ------------------------------------------------------------------------------------------------------


@pytest.fixture
def funnel_deals(org, pipeline, lost_reason):
    """Open stages: Prospecting 1, Qualification 2, Discovery 3, Proposal 4, Negotiation 5."""
    deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-10-01")])  # furthest 1
    deal_with_history(  # skips Qualification: furthest 3, passed Qualification
        owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-10-01"), ("Discovery", "2026-10-02")]
    )
    deal_with_history(  # moves back: furthest 2
        owner=org.rep,
        pipeline=pipeline,
        path=[("Prospecting", "2026-10-01"), ("Qualification", "2026-10-02"), ("Prospecting", "2026-10-03")],
    )
    deal_with_history(  # won straight from Prospecting: reached every open stage
        owner=org.other_rep, pipeline=pipeline, path=[("Prospecting", "2026-10-01"), ("Won", "2026-10-05")]
    )
    deal_with_history(  # lost from Proposal: furthest 4
        owner=org.other_rep,
        pipeline=pipeline,
        lost_reason=lost_reason,
        path=[("Prospecting", "2026-10-01"), ("Proposal", "2026-10-02"), ("Lost", "2026-10-06")],
    )
    deal_with_history(  # won then reopened at Qualification: not won now, furthest 2
        owner=org.rep,
        pipeline=pipeline,
        path=[
            ("Prospecting", "2026-10-01"),
            ("Qualification", "2026-10-02"),
            ("Won", "2026-10-03"),
            ("Qualification", "2026-10-04"),
        ],
    )
    deal_with_history(  # created lost: reached no open stage
        owner=org.rep, pipeline=pipeline, lost_reason=lost_reason, path=[("Lost", "2026-10-01")]
    )
    deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-11-01")])  # November's cohort


def _funnel(pipeline, **filters) -> list[tuple[str, int, float | None]]:
    rows = sorted(latest_rows("funnel", pipeline_id=pipeline.pk, **filters), key=lambda row: row.values["order"])
    names = dict(pipeline.stages.values_list("id", "name"))
    return [(names[row.stage_id], row.values["reached"], row.values["conversion"]) for row in rows]


def test_funnel_counts_skipped_stages_as_passed_and_uses_the_furthest_stage(pipeline, funnel_deals):
    recompute_metrics(as_of=AS_OF)
    assert _funnel(pipeline, group_kind="company", **OCT) == [
        ("Prospecting", 6, pytest.approx(5 / 6)),
        ("Qualification", 5, pytest.approx(3 / 5)),
        ("Discovery", 3, pytest.approx(2 / 3)),
        ("Proposal", 2, pytest.approx(1 / 2)),
        ("Negotiation", 1, pytest.approx(1.0)),  # last open stage: won / reached
    ]
    assert one("funnel", group_kind="company", stage_id=stage(pipeline, "Prospecting").pk, **OCT)["cohort_deals"] == 7
    all_time = _funnel(pipeline, group_kind="company", period_kind="all")
    assert [reached for _, reached, _ in all_time] == [7, 5, 3, 2, 1]


def test_funnel_per_owner_and_zero_reached_stages_have_null_conversion(org, pipeline, funnel_deals):
    recompute_metrics(as_of=AS_OF)
    assert _funnel(pipeline, group_kind="owner", owner_id=org.other_rep.pk, **OCT) == [
        ("Prospecting", 2, 1.0),
        ("Qualification", 2, 1.0),
        ("Discovery", 2, 1.0),
        ("Proposal", 2, 0.5),
        ("Negotiation", 1, 1.0),
    ]
    assert _funnel(pipeline, group_kind="owner", owner_id=org.rep.pk, **NOV) == [
        ("Prospecting", 1, 0.0),
        ("Qualification", 0, None),
        ("Discovery", 0, None),
        ("Proposal", 0, None),
        ("Negotiation", 0, None),
    ]


# --- Learned probability -------------------------------------------------------------------------------------------


def test_learned_probability_shrinks_towards_the_configured_one(pipeline, funnel_deals, settings):
    settings.METRICS_PRIOR_STRENGTH = 10
    recompute_metrics(as_of=AS_OF)
    # Closed in the window: one won (reached all), one lost from Proposal (reached 1–4), one created lost (none).
    prospecting = one("learned_probability", group_kind="company", stage_id=stage(pipeline, "Prospecting").pk)
    assert (prospecting["w"], prospecting["l"], prospecting["k"]) == (1, 1, 10)
    assert prospecting["p0"] == pytest.approx(0.10)
    assert prospecting["p"] == pytest.approx((1 + 10 * 0.10) / (1 + 1 + 10))
    negotiation = one("learned_probability", group_kind="company", stage_id=stage(pipeline, "Negotiation").pk)
    assert (negotiation["w"], negotiation["l"]) == (1, 0)
    assert negotiation["p"] == pytest.approx((1 + 10 * 0.80) / (1 + 0 + 10))


def test_learned_probability_lookback_window_and_zero_meaning_all(org, pipeline, settings):
    deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2025-01-01"), ("Won", "2025-06-01")])
    settings.METRICS_LOOKBACK_DAYS = 365
    recompute_metrics(as_of=AS_OF)
    prospecting = one("learned_probability", group_kind="company", stage_id=stage(pipeline, "Prospecting").pk)
    assert (prospecting["w"], prospecting["l"], prospecting["p"]) == (0, 0, pytest.approx(0.10))
    settings.METRICS_LOOKBACK_DAYS = 0
    recompute_metrics(as_of=AS_OF)
    prospecting = one("learned_probability", group_kind="company", stage_id=stage(pipeline, "Prospecting").pk)
    assert prospecting["w"] == 1
    assert prospecting["p"] == pytest.approx(2 / 11)


# --- Weighted forecast ---------------------------------------------------------------------------------------------


def test_weighted_forecast_commit_best_case_pipeline_and_won(org, pipeline):
    def open_deal(stage_name, amount, close, **fields):
        return deal_with_history(
            owner=org.rep,
            pipeline=pipeline,
            amount=Decimal(amount),
            expected_close_date=close,
            path=[
                ("Prospecting", "2026-10-01"),
                *([(stage_name, "2026-10-02")] if stage_name != "Prospecting" else []),
            ],
            **fields,
        )

    open_deal("Proposal", "1000", "2026-11-10")  # 60 %, best case
    open_deal("Negotiation", "2000", "2026-11-30")  # 80 %, commit
    open_deal("Prospecting", "500", "2026-11-01")  # 10 %, pipeline
    open_deal("Prospecting", "300", "2026-11-02", forecast_category_override="commit")  # 10 %, commit by override
    open_deal("Proposal", "9999", "2026-12-01")  # December
    deal_with_history(  # won in November: reached every stage, so w = 1 for every open stage
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("700"),
        path=[("Prospecting", "2026-10-01"), ("Won", "2026-11-05")],
    )
    recompute_metrics(as_of=AS_OF)
    november = one("forecast", group_kind="company", **NOV)
    assert money(november["weighted_configured"]) == Decimal("2280.00")  # 600 + 1600 + 50 + 30
    # learned p = (1 + 10·p0) / 11: Proposal 7/11, Negotiation 9/11, Prospecting 2/11
    expected_learned = (Decimal(1000 * 7 + 2000 * 9 + 500 * 2 + 300 * 2) / 11).quantize(Decimal("0.01"))
    assert money(november["weighted_learned"]) == expected_learned
    assert money(november["commit"]) == Decimal("2300")
    assert money(november["best_case"]) == Decimal("3300")
    assert money(november["pipeline"]) == Decimal("3800")
    assert november["open_count"] == 4
    assert money(november["won_amount"]) == Decimal("700")
    assert money(one("forecast", group_kind="company", **Q4)["pipeline"]) == Decimal("13799")


def test_past_due_counts_open_deals_expected_before_today(org, pipeline):
    for close in ["2026-11-24", "2026-10-01"]:
        deal_with_history(
            owner=org.rep,
            pipeline=pipeline,
            amount=Decimal("100"),
            expected_close_date=close,
            path=[("Prospecting", "2026-09-01")],
        )
    deal_with_history(  # due today: not past due
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("100"),
        expected_close_date="2026-11-25",
        path=[("Prospecting", "2026-09-01")],
    )
    deal_with_history(  # won: not open
        owner=org.rep,
        pipeline=pipeline,
        expected_close_date="2026-10-01",
        path=[("Prospecting", "2026-09-01"), ("Won", "2026-09-05")],
    )
    recompute_metrics(as_of=AS_OF)
    company = one("past_due", group_kind="company")
    assert (company["count"], money(company["amount"])) == (2, Decimal("200"))
    assert one("past_due", group_kind="owner", owner_id=org.rep.pk)["count"] == 2


# --- Time in stage -------------------------------------------------------------------------------------------------


def test_time_in_stage_over_completed_stays_and_in_stage_now(org, pipeline):
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        path=[
            ("Prospecting", "2026-10-01"),
            ("Qualification", "2026-10-03"),
            ("Prospecting", "2026-10-06"),  # back: a second stay in Prospecting
            ("Won", "2026-10-07"),
        ],
    )
    deal_with_history(  # in Qualification now for 5 days
        owner=org.rep,
        pipeline=pipeline,
        path=[("Prospecting", "2026-11-10 12:00"), ("Qualification", "2026-11-20 12:00")],
    )
    recompute_metrics(as_of=AS_OF)
    prospecting = one("stage_time", group_kind="company", stage_id=stage(pipeline, "Prospecting").pk)
    assert prospecting["stays"] == 3  # 2 days, 1 day, and 10 days for the second deal
    assert prospecting["days_mean"] == pytest.approx((2 + 1 + 10) / 3)
    assert prospecting["days_median"] == pytest.approx(2)
    assert prospecting["in_stage_now"] == 0
    qualification = one("stage_time", group_kind="company", stage_id=stage(pipeline, "Qualification").pk)
    assert (qualification["stays"], qualification["days_mean"]) == (1, pytest.approx(3))
    assert qualification["in_stage_now"] == 1
    assert qualification["now_age_days_max"] == pytest.approx(5)
    # The won stay never ended and no open deal sits in Won: a stage without data has no row.
    assert latest_rows("stage_time", stage_id=stage(pipeline, "Won").pk) == []


# --- Stale deals ---------------------------------------------------------------------------------------------------


def test_stale_deals_are_rotting_or_without_a_next_step(org, pipeline):
    rotting = deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-10-20")])  # 36 days > 30
    services.log_activity(actor=org.rep, kind="call", subject="Call back", deal=rotting, due_at=at("2026-12-01"))
    fresh_planned = deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-11-20")])
    services.log_activity(actor=org.rep, kind="call", subject="Demo", deal=fresh_planned, due_at=at("2026-11-26"))
    overdue_only = deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-11-20")])
    services.log_activity(actor=org.rep, kind="call", subject="Late", deal=overdue_only, due_at=at("2026-11-24"))
    done_only = deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-11-20")])
    services.log_activity(
        actor=org.rep, kind="call", subject="Done", deal=done_only, due_at=at("2026-11-30"), done_at=at("2026-11-21")
    )
    deal_with_history(  # closed: never stale
        owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-01-01"), ("Won", "2026-02-01")]
    )
    recompute_metrics(as_of=AS_OF)
    rows = {row.deal_id: row.values for row in latest_rows("stale")}
    assert set(rows) == {rotting.pk, overdue_only.pk, done_only.pk}
    assert (rows[rotting.pk]["rotting"], rows[rotting.pk]["no_next_step"]) == (True, False)
    assert rows[rotting.pk]["days_in_stage"] == pytest.approx(36.5)
    assert (rows[overdue_only.pk]["rotting"], rows[overdue_only.pk]["no_next_step"]) == (False, True)
    assert rows[done_only.pk]["no_next_step"] is True


def test_a_deal_untouched_longer_than_its_rotting_days_has_no_activity(org, pipeline):
    """SPEC §3a: rotting by inactivity, beside the stay in the stage and the next step."""
    # Entered 36 days before AS_OF and left alone since (its entry was its last touch).
    idle = deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-10-20")], amount=700)
    leave_untouched(idle, since=at("2026-10-20"))
    # As long in its stage, but worked on: a call done five days before AS_OF.
    worked = deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-10-20")], amount=300)
    leave_untouched(worked, since=at("2026-10-20"))
    services.log_activity(actor=org.rep, kind="call", subject="Called", deal=worked, done_at=at("2026-11-20 12:00"))
    # No deal can be idle longer than it has been in its stage (entering it touched it): a deal that rots by
    # inactivity is always in its stage too long as well, and the reason tells idle deals from slow, worked ones.
    for deal in (idle, worked):
        services.log_activity(actor=org.rep, kind="call", subject="Next", deal=deal, due_at=at("2026-12-01"))
    recompute_metrics(as_of=AS_OF)
    rows = {row.deal_id: row.values for row in latest_rows("stale")}
    assert set(rows) == {idle.pk, worked.pk}
    reasons = lambda row: {r for r in ("in_stage_too_long", "no_next_step", "no_activity") if row[r]}  # noqa: E731
    assert reasons(rows[idle.pk]) == {"in_stage_too_long", "no_activity"}
    assert reasons(rows[worked.pk]) == {"in_stage_too_long"}
    assert rows[idle.pk]["days_since_touch"] == pytest.approx(36.5)
    assert rows[worked.pk]["days_since_touch"] == pytest.approx(5)
    assert rows[idle.pk]["rotting"] is True and rows[idle.pk]["amount"] == "700.00"


def test_a_deal_last_touched_exactly_its_rotting_days_ago_is_not_idle(org, pipeline):
    deal = deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-10-20")])
    leave_untouched(deal, since=at("2026-10-26 12:00"))  # 30 days before AS_OF
    recompute_metrics(as_of=AS_OF)
    [row] = latest_rows("stale")
    assert (row.values["in_stage_too_long"], row.values["no_activity"]) == (True, False)


def test_a_deal_exactly_at_its_rotting_days_is_not_stale(org, pipeline):
    deal = deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-10-26 12:00")])  # 30 days
    services.log_activity(actor=org.rep, kind="call", subject="Next", deal=deal, due_at=at("2026-12-01"))
    recompute_metrics(as_of=AS_OF)
    assert latest_rows("stale") == []


# --- Leads ---------------------------------------------------------------------------------------------------------


def test_qualified_leads_velocity_and_conversion_rates(org, pipeline):
    def lead(created, *steps):
        record = services.create_lead(actor=org.rep, last_name="Lead", created_at=at(created))
        for status, when in steps:
            if status == "converted":
                services.convert_lead(lead=record, actor=org.rep, pipeline=pipeline, at=at(when))
            else:
                record = services.advance_lead(lead=record, actor=org.rep, status=status, at=at(when))
        return record

    lead("2026-10-01", ("mql", "2026-10-02"), ("sql", "2026-10-03"))  # qualified in October
    lead("2026-10-05", ("sql", "2026-10-06"), ("converted", "2026-10-07"))  # skips mql: counts as passed
    lead("2026-10-08", ("mql", "2026-10-09"))  # mql only
    lead("2026-10-10", ("disqualified", "2026-10-11"))
    lead("2026-09-20", ("sql", "2026-11-02"))  # created in September, qualified in November
    lead("2026-11-01", ("sql", "2026-11-03"))
    lead("2026-11-04", ("sql", "2026-11-05"))
    recompute_metrics(as_of=AS_OF)

    october = one("leads", group_kind="company", **OCT)
    assert (october["qualified"], october["qualified_previous"], october["lead_velocity_rate"]) == (2, 0, None)
    assert (october["created"], october["created_reached_mql"], october["created_reached_sql"]) == (4, 3, 2)
    assert october["mql_to_sql_rate"] == pytest.approx(2 / 3)
    assert october["lead_to_deal_rate"] == pytest.approx(1 / 4)
    november = one("leads", group_kind="company", **NOV)
    assert (november["qualified"], november["qualified_previous"]) == (3, 2)
    assert november["lead_velocity_rate"] == pytest.approx(50.0)
    assert november["created"] == 2
    december = one("leads", group_kind="company", period_kind="month", period_start=dt.date(2026, 12, 1))
    assert (december["qualified"], december["lead_velocity_rate"]) == (0, pytest.approx(-100.0))
    assert one("leads", group_kind="owner", owner_id=org.rep.pk, **Q4)["qualified"] == 5


# --- Quota attainment, coverage, deals needed ----------------------------------------------------------------------


def test_quota_attainment_coverage_and_deals_needed(org, pipeline, lost_reason):
    def deal(owner, amount, path, close="2026-12-31", **fields):
        return deal_with_history(
            owner=owner, pipeline=pipeline, amount=Decimal(amount), expected_close_date=close, path=path, **fields
        )

    deal(org.rep, "3000", [("Prospecting", "2026-09-01"), ("Won", "2026-10-11")])  # won in the quota's quarter
    deal(org.rep, "4000", [("Prospecting", "2026-09-01")], close="2026-12-15")  # open, expected in the quarter
    deal(org.rep, "999", [("Prospecting", "2026-09-01")], close="2027-02-01")  # open, expected after it
    # The trailing four quarters (Q4 2025 – Q3 2026): 2 won of 3 closed, average won 3000.
    deal(org.rep, "2000", [("Prospecting", "2026-01-01"), ("Won", "2026-03-01")])
    deal(org.rep, "4000", [("Prospecting", "2026-01-01"), ("Won", "2026-06-01")])
    deal(org.rep, "50", [("Prospecting", "2026-01-01"), ("Lost", "2026-05-01")], lost_reason=lost_reason)
    deal(org.rep, "70000", [("Prospecting", "2025-01-01"), ("Won", "2025-09-30")])  # before the trailing quarters
    q4 = {"period_start": dt.date(2026, 10, 1), "period_end": dt.date(2027, 1, 1)}
    rep_quota = Quota.objects.create(user=org.rep, amount=Decimal("10000"), **q4)
    team_quota = Quota.objects.create(team=org.team, amount=Decimal("2000"), **q4)
    zero_quota = Quota.objects.create(user=org.teammate, amount=Decimal("0"), **q4)
    idle_team_quota = Quota.objects.create(team=org.other_team, amount=Decimal("100"), **q4)
    recompute_metrics(as_of=AS_OF)
    rows = {row.values["quota_id"]: row for row in latest_rows("quota")}

    rep = rows[rep_quota.pk]
    assert (rep.group_kind, rep.owner_id, rep.period_kind, rep.period_start) == (
        "owner",
        org.rep.pk,
        "quota",
        q4["period_start"],
    )
    assert money(rep.values["won_amount"]) == Decimal("3000")
    assert rep.values["attainment"] == pytest.approx(0.3)
    assert money(rep.values["open_amount"]) == Decimal("4000")
    assert money(rep.values["remaining"]) == Decimal("7000")
    assert rep.values["coverage"] == pytest.approx(4000 / 7000)
    assert rep.values["trailing_win_rate"] == pytest.approx(2 / 3)
    assert money(rep.values["trailing_avg_won_amount"]) == Decimal("3000")
    assert rep.values["deals_needed"] == 4  # ceil(7000 / 3000 / (2/3)) = ceil(3.5)

    team = rows[team_quota.pk]
    assert (team.group_kind, team.team_id) == ("team", org.team.pk)
    assert team.values["attainment"] == pytest.approx(1.5)
    assert (team.values["coverage"], team.values["deals_needed"]) == (None, 0)  # nothing remains
    assert rows[zero_quota.pk].values["attainment"] is None
    assert rows[idle_team_quota.pk].values["deals_needed"] is None  # nothing won in the trailing quarters


# --- Forecast snapshots and accuracy -------------------------------------------------------------------------------


def test_forecast_is_kept_at_period_start_and_compared_with_the_won_amount(org, pipeline, lost_reason):
    deal_with_history(  # won in September, reached every stage: learned p = (1 + 10·p0) / 11 from October on
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("1"),
        path=[("Prospecting", "2026-08-01"), ("Won", "2026-09-10")],
    )
    big = deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("1000"),
        expected_close_date="2026-10-20",
        path=[("Prospecting", "2026-09-01"), ("Negotiation", "2026-09-02")],  # 80 %
    )
    small = deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("500"),
        expected_close_date="2026-10-25",
        path=[("Prospecting", "2026-09-01"), ("Proposal", "2026-09-02")],  # 60 %
    )
    recompute_metrics(as_of=at("2026-10-01 00:30"))  # the first recompute of October keeps its forecast
    kept = ForecastSnapshot.objects.get(group_kind="company", **OCT)
    assert kept.weighted_configured == Decimal("1100.00")
    assert kept.weighted_learned == (Decimal(1000 * 9 + 500 * 7) / 11).quantize(Decimal("0.01"))

    services.update_deal(deal=small, actor=org.rep, amount=Decimal("5000"))
    recompute_metrics(as_of=at("2026-10-15 00:00"))  # later in October: the kept forecast does not move
    assert ForecastSnapshot.objects.get(group_kind="company", **OCT).weighted_configured == Decimal("1100.00")
    assert latest_rows("forecast_accuracy", **OCT) == []  # October has not ended

    services.move_deal(deal=big, stage=stage(pipeline, "Won"), actor=org.rep, at=at("2026-10-20 10:00"))
    services.move_deal(
        deal=small, stage=stage(pipeline, "Lost"), actor=org.rep, at=at("2026-10-26"), lost_reason=lost_reason
    )
    recompute_metrics(as_of=at("2026-11-02 00:00"))
    october = one("forecast_accuracy", group_kind="company", **OCT)
    assert money(october["actual_won"]) == Decimal("1000")
    assert october["ape_configured"] == pytest.approx(10.0)  # |1000 − 1100| / 1000
    assert october["ape_learned"] == pytest.approx(float(abs(1000 - kept.weighted_learned) / 10))
    assert one("forecast_accuracy", group_kind="owner", owner_id=org.rep.pk, **OCT)["ape_configured"] == pytest.approx(
        10
    )
    # November's forecast was kept by the first recompute in November; the quarter's by October's.
    assert ForecastSnapshot.objects.get(group_kind="company", **NOV).snapshotted_at == at("2026-11-02 00:00")
    assert ForecastSnapshot.objects.get(group_kind="company", **Q4).snapshotted_at == at("2026-10-01 00:30")


def test_a_period_with_nothing_expected_is_kept_as_zero_and_nothing_won_has_no_error(org, pipeline):
    recompute_metrics(as_of=at("2026-10-01 00:30"))
    assert ForecastSnapshot.objects.get(group_kind="company", **OCT).weighted_configured == 0
    recompute_metrics(as_of=at("2026-11-01 00:30"))
    october = one("forecast_accuracy", group_kind="company", **OCT)
    assert (money(october["actual_won"]), october["ape_configured"]) == (Decimal("0"), None)


def test_deals_needed_is_exact_when_the_win_rate_is_a_repeating_decimal(org, pipeline, lost_reason):
    # Trailing quarters: 1 won of 3 closed (win rate 1/3), average won 1000; 3000 remaining → exactly 9 deals.
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("1000"),
        path=[("Prospecting", "2026-01-01"), ("Won", "2026-02-01")],
    )
    for _ in range(2):
        deal_with_history(
            owner=org.rep,
            pipeline=pipeline,
            lost_reason=lost_reason,
            path=[("Prospecting", "2026-01-01"), ("Lost", "2026-02-01")],
        )
    quota = Quota.objects.create(
        user=org.rep, amount=Decimal("3000"), period_start=dt.date(2026, 10, 1), period_end=dt.date(2027, 1, 1)
    )
    recompute_metrics(as_of=AS_OF)
    assert one("quota", owner_id=org.rep.pk)["quota_id"] == quota.pk
    assert one("quota", owner_id=org.rep.pk)["deals_needed"] == 9


# --- The declared keys of every family ----------------------------------------------------------------------------


def test_every_row_of_a_run_has_exactly_the_keys_its_metric_declares(org, pipeline, lost_reason):
    deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-09-01"), ("Won", "2026-10-11")])
    deal_with_history(
        owner=org.teammate,
        pipeline=pipeline,
        lost_reason=lost_reason,
        path=[("Prospecting", "2026-09-01"), ("Lost", "2026-10-04")],
    )
    deal_with_history(
        owner=org.rep, pipeline=pipeline, expected_close_date="2026-10-20", path=[("Discovery", "2026-09-01")]
    )
    lead = services.create_lead(actor=org.rep, last_name="Lead", created_at=at("2026-10-01"))
    services.advance_lead(lead=lead, actor=org.rep, status="sql", at=at("2026-10-02"))
    Quota.objects.create(user=org.rep, period_start=dt.date(2026, 10, 1), period_end=dt.date(2027, 1, 1), amount=1)
    recompute_metrics(as_of=at("2026-10-01 12:00"))  # keeps October's forecast, which November's run then judges
    run = recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)  # the backtest and calibration, apart from the recompute

    rows = MetricSnapshot.objects.filter(run=run)
    assert set(rows.values_list("metric", flat=True)) == set(Metric.values)
    for row in rows:
        assert set(row.values) == set(result_keys(row.metric)), row.metric


def test_a_family_refuses_to_build_values_other_than_the_declared_keys():
    with pytest.raises(ValueError, match="must build"):
        metrics._values(Metric.PAST_DUE, count="0", amount="0")


def test_a_full_recompute_and_a_refresh_pass_the_same_sql_parameters():
    full = MetricParams(run_id=1, computed_at=AS_OF, tz="Europe/Paris", prior_strength=10, lookback_days=365)
    scope = Scope(closed=frozenset({("month", dt.date(2026, 11, 1)), ("year", dt.date(2026, 1, 1))}), changes=((7, 9),))
    refresh = dataclasses.replace(full, scope=scope)
    assert full.sql().keys() == refresh.sql().keys()
    assert (full.sql()["scoped"], full.sql()["closed_since"], full.sql()["changes_first"]) == (False, None, [])
    assert (refresh.sql()["changes_first"], refresh.sql()["changes_last"]) == ([7], [9])
    assert refresh.sql()["closed_kinds"] == ["month", "year"]
    assert refresh.sql()["closed_since"] == dt.datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Paris"))
    assert refresh.sql()["forecast_since_date"] == dt.date.max  # nothing to read: an index skips everything


def test_metric_params_refuse_an_unknown_period_kind_or_a_negative_lookback():
    with pytest.raises(ValueError):
        MetricParams(run_id=1, computed_at=AS_OF, tz="UTC", prior_strength=10, lookback_days=0, period_kinds=("week",))
    with pytest.raises(ValueError):
        MetricParams(run_id=1, computed_at=AS_OF, tz="UTC", prior_strength=10, lookback_days=-1)
