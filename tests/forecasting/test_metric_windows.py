"""Property-based: a custom range or all time (`forecasting.selectors.metric_rows`), computed live in SQL, equals a
plain Python reference over the same rows: one row per group, for every group the caller may see (SPEC §3: counts 0
and rates null where nothing closed), for win rates and sales cycle, the forecast, the funnel and leads.

The data and its building are those of the property test of the recompute (`test_metrics_properties`); the
reference below is written from SPEC §3 again, for one window instead of every month, quarter and year.
"""

import statistics
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Team, User
from forecasting.models import Metric
from forecasting.periods import Window
from forecasting.selectors import SnapshotQuery, metric_rows
from forecasting.services import recompute_metrics
from pipeline.models import Deal, Lead, Pipeline, Stage, StageChange
from tests.factories import make_user
from tests.forecasting.test_metrics_properties import (
    AS_OF,
    LOOKBACK_DAYS,
    K,
    _build,
    _cents,
    _same,
    deal_strategy,
    lead_strategy,
    reference,
    stages_strategy,
)

pytestmark = pytest.mark.django_db

GROUPS = ["company", "owner", "team", "pipeline", "source"]
STAGE_GROUPS = ["company", "owner", "team", "source"]


@st.composite
def windows(draw) -> Window:
    """All time, a range of days, or a range of whole months (the one a calendar period may equal)."""
    shape = draw(st.sampled_from(["all", "days", "months"]))
    if shape == "all":
        return Window.all_time()
    if shape == "days":
        start = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 480)))
        return Window.between(start, start + timedelta(days=draw(st.integers(1, 200))))
    first = draw(st.integers(0, 16))
    months = draw(st.integers(1, 6))
    shift = lambda index: date(2026 + index // 12, index % 12 + 1, 1)  # noqa: E731
    return Window.between(shift(first), shift(first + months))


def _inside(window: Window, moment: datetime | None, tz: ZoneInfo) -> bool:
    if moment is None:
        return False
    if window.start is None:
        return True
    return window.start <= moment.astimezone(tz).date() < window.end


def _on(window: Window | None, day: date | None) -> bool:
    return day is not None and window is not None and (window.start is None or window.start <= day < window.end)


def _previous(window: Window) -> Window | None:
    """The range of the same length just before: in months between firsts of months, else in days."""
    if window.start is None:
        return None
    if window.start.day == window.end.day == 1:
        months = (window.end.year - window.start.year) * 12 + window.end.month - window.start.month
        index = window.start.year * 12 + window.start.month - 1 - months
        return Window.between(date(index // 12, index % 12 + 1, 1), window.start)
    return Window.between(window.start - (window.end - window.start), window.start)


def _keys(record, team_id, kind):
    return {
        "company": None,
        "owner": record.owner_id,
        "team": team_id,
        "pipeline": getattr(record, "pipeline_id", None),
        "source": record.source,
    }[kind]


def _visible_keys(kind):
    """The groups an admin sees even when empty: active users, teams, pipelines, the company (sources: none)."""
    return {
        "company": [None],
        "owner": list(User.objects.filter(is_active=True).values_list("pk", flat=True)),
        "team": list(Team.objects.values_list("pk", flat=True)),
        "pipeline": list(Pipeline.objects.values_list("pk", flat=True)),
        "source": [],
    }[kind]


def _median(values):
    return statistics.median(values) if values else None


def _mean(values):
    return statistics.fmean(values) if values else None


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else None


def _days(delta):
    return delta.total_seconds() / 86400


def expected_rows(metric: str, kind: str, window: Window, tz: ZoneInfo, learned: dict) -> dict:
    """The reference rows of `metric` for `window` and group kind `kind`, keyed (group key, stage id)."""
    teams = dict(User.objects.values_list("id", "team_id"))
    deals = list(Deal.objects.all())
    result = {}
    if metric == Metric.DEAL_OUTCOMES:
        closed = defaultdict(list)
        for key in _visible_keys(kind):
            closed[key]
        for deal in deals:
            if deal.status in ("won", "lost") and _inside(window, deal.closed_at, tz):
                closed[_keys(deal, teams[deal.owner_id], kind)].append(deal)
        for key, group in closed.items():
            won = [d for d in group if d.status == "won"]
            lost = [d for d in group if d.status == "lost"]
            amounts = [d.amount for d in won if d.amount is not None]
            result[(key, None)] = {
                "won": len(won),
                "lost": len(lost),
                "win_rate": _ratio(len(won), len(group)),
                "won_amount": sum(amounts, Decimal(0)),
                "avg_won_amount": _cents(sum(amounts) / len(amounts)) if amounts else None,
                "won_cycle_days_mean": _mean([_days(d.closed_at - d.created_at) for d in won]),
                "won_cycle_days_median": _median([_days(d.closed_at - d.created_at) for d in won]),
                "lost_cycle_days_mean": _mean([_days(d.closed_at - d.created_at) for d in lost]),
                "lost_cycle_days_median": _median([_days(d.closed_at - d.created_at) for d in lost]),
            }
    elif metric == Metric.FORECAST:
        stages = {stage.pk: stage for stage in Stage.objects.all()}
        facts = defaultdict(lambda: {"open": [], "won": []})
        for key in _visible_keys(kind):
            facts[key]
        for deal in deals:
            key = _keys(deal, teams[deal.owner_id], kind)
            if deal.status == "open" and _on(window, deal.expected_close_date):
                facts[key]["open"].append(deal)
            if deal.status == "won" and _inside(window, deal.closed_at, tz):
                facts[key]["won"].append(deal)
        for key, group in facts.items():
            priced = [d for d in group["open"] if d.amount is not None]
            result[(key, None)] = {
                "weighted_configured": _cents(sum(d.amount * stages[d.stage_id].probability / 100 for d in priced)),
                "weighted_learned": sum((Fraction(d.amount) * learned[d.stage_id] for d in priced), Fraction(0)),
                "commit": sum((d.amount for d in priced if d.forecast_category == "commit"), Decimal(0)),
                "best_case": sum((d.amount for d in priced if d.forecast_category != "pipeline"), Decimal(0)),
                "pipeline": sum((d.amount for d in priced), Decimal(0)),
                "open_count": len(group["open"]),
                "won_amount": sum((d.amount for d in group["won"] if d.amount is not None), Decimal(0)),
                "won_count": len(group["won"]),
            }
    elif metric == Metric.FUNNEL:
        stages = list(Stage.objects.filter(kind="open").order_by("pipeline_id", "order"))
        changes = defaultdict(list)
        for change in StageChange.objects.select_related("to_stage"):
            changes[change.deal_id].append(change.to_stage)
        cohorts = defaultdict(list)
        for key in _visible_keys(kind):
            for pipeline_id in {stage.pipeline_id for stage in stages}:
                cohorts[(key, pipeline_id)]
        for deal in deals:
            if _inside(window, deal.created_at, tz):
                cohorts[(_keys(deal, teams[deal.owner_id], kind), deal.pipeline_id)].append(deal)
        for (key, pipeline_id), cohort in cohorts.items():
            mine = [stage for stage in stages if stage.pipeline_id == pipeline_id]

            def furthest(deal):
                if deal.status == "won":
                    return float("inf")
                return max((s.order for s in changes[deal.id] if s.kind == "open"), default=0)

            reached = [sum(1 for d in cohort if furthest(d) >= stage.order) for stage in mine]
            won = sum(1 for d in cohort if d.status == "won")
            for index, stage in enumerate(mine):
                following = reached[index + 1] if index + 1 < len(mine) else None
                result[(key, stage.pk)] = {
                    "order": stage.order,
                    "reached": reached[index],
                    "next_reached": following,
                    "won": won,
                    "cohort_deals": len(cohort),
                    "conversion": _ratio(won if following is None else following, reached[index]),
                }
    else:
        previous = _previous(window)
        counts = defaultdict(lambda: defaultdict(int))
        for key in _visible_keys(kind):
            counts[key]
        for lead in Lead.objects.all():
            key = _keys(lead, teams[lead.owner_id], kind)
            if _inside(window, lead.created_at, tz):
                counts[key]["created"] += 1
                counts[key]["mql"] += lead.mql_at is not None
                counts[key]["sql"] += lead.sql_at is not None
                counts[key]["converted"] += lead.converted_at is not None
            if _inside(window, lead.sql_at, tz):
                counts[key]["qualified"] += 1
            if previous is not None and _inside(previous, lead.sql_at, tz):
                counts[key]["previous"] += 1
        for key, count in counts.items():
            result[(key, None)] = {
                "qualified": count["qualified"],
                "qualified_previous": count["previous"],
                "lead_velocity_rate": _ratio((count["qualified"] - count["previous"]) * 100, count["previous"]),
                "created": count["created"],
                "created_reached_mql": count["mql"],
                "created_reached_sql": count["sql"],
                "created_converted": count["converted"],
                "mql_to_sql_rate": _ratio(count["sql"], count["mql"]),
                "lead_to_deal_rate": _ratio(count["converted"], count["created"]),
            }
    return result


COLUMN = {"company": lambda r: None, "owner": lambda r: r.owner_id, "team": lambda r: r.team_id}
COLUMN |= {"pipeline": lambda r: r.pipeline_id, "source": lambda r: r.source}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    open_stages=stages_strategy,
    deals=st.lists(deal_strategy, max_size=8),
    leads=st.lists(lead_strategy, max_size=5),
    window=windows(),
    tz=st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"]),
)
def test_a_window_has_one_row_per_visible_group_equal_to_the_python_reference(open_stages, deals, leads, window, tz):
    with (
        override_settings(TIME_ZONE=tz, METRICS_PRIOR_STRENGTH=K, METRICS_LOOKBACK_DAYS=LOOKBACK_DAYS),
        transaction.atomic(),
    ):
        _build(open_stages, deals, leads)
        admin = make_user(role="admin")
        recompute_metrics(as_of=AS_OF)
        zone = ZoneInfo(tz)
        learned = {
            key[5]: values["p"]
            for key, values in reference(zone).items()
            if key[:4] == ("learned_probability", "now", None, "company")
        }
        for metric in (Metric.DEAL_OUTCOMES, Metric.FORECAST, Metric.FUNNEL, Metric.LEADS):
            for kind in STAGE_GROUPS if metric in (Metric.FUNNEL, Metric.LEADS) else GROUPS:
                read = metric_rows(user=admin, query=SnapshotQuery(metric=metric, group_kind=kind, window=window))
                actual = {}
                for row in read.rows:
                    key = (COLUMN[kind](row), row.stage_id)
                    assert key not in actual, f"{metric} {kind}: two rows for {key}"
                    assert row.group_kind == kind
                    calendar = window.calendar_period()
                    if calendar is None and not (metric == Metric.FUNNEL and window.start is None):
                        assert (row.period_kind, row.period_start, row.period_end) == (
                            window.kind,
                            window.start,
                            window.end,
                        )
                    actual[key] = row.values
                expected = expected_rows(metric, kind, window, zone, learned)
                assert sorted(expected, key=str) == sorted(actual, key=str), f"{metric} {kind} {window}"
                for key, values in expected.items():
                    for name, value in values.items():
                        assert _same(name, value, actual[key][name]), (
                            f"{metric} {kind} {window} {key} {name}: expected {value!r}, SQL gave {actual[key][name]!r}"
                        )
        transaction.set_rollback(True)


def test_window_bounds_are_local_midnights():
    window = Window.between(date(2026, 3, 1), date(2026, 5, 1))
    start, end = window.bounds("America/New_York")
    assert start == datetime.combine(date(2026, 3, 1), time.min, ZoneInfo("America/New_York"))
    assert (start.utcoffset(), end.utcoffset()) == (timedelta(hours=-5), timedelta(hours=-4))  # DST in between
