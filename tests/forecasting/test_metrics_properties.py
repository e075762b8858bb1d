"""Property-based: on random pipelines and histories, the SQL metrics equal a plain Python reference.

The reference below is written straight from SPEC §3, one loop per definition, and reads the rows back through
the ORM; it is slow and obviously correct, which is the point.
"""

import itertools
import math
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import User
from forecasting.models import Quota
from forecasting.services import recompute_metrics
from pipeline import services
from pipeline.models import Activity, Deal, Lead, Stage, StageChange
from tests.factories import leave_untouched, make_lost_reason, make_pipeline, make_team, make_user
from tests.forecasting.helpers import latest_rows

pytestmark = pytest.mark.django_db

BASE = datetime(2026, 1, 1, tzinfo=UTC)
AS_OF = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
K = 10
LOOKBACK_DAYS = 365
SOURCES = ["", "web", "referral"]
CATEGORIES = ["pipeline", "best_case", "commit"]

# --- Random data -------------------------------------------------------------------------------------------------

hours = st.integers(min_value=0, max_value=24 * 420)
stages_strategy = st.lists(
    st.tuples(st.integers(0, 100), st.sampled_from(CATEGORIES), st.integers(1, 150)), min_size=1, max_size=4
)  # the open stages: probability, forecast category, rotting days
deal_strategy = st.fixed_dictionaries(
    {
        "owner": st.integers(0, 2),
        "source": st.sampled_from(SOURCES),
        "amount": st.one_of(st.none(), st.integers(0, 10**6).map(lambda cents: Decimal(cents) / 100)),
        "close_day": st.one_of(st.none(), st.integers(-60, 500)),
        "start": hours,
        # (stage index among open stages, or "won"/"lost"; hours after the previous move)
        "moves": st.lists(
            st.tuples(st.one_of(st.integers(0, 3), st.sampled_from(["won", "lost"])), st.integers(0, 24 * 60)),
            max_size=4,
        ),
        "first": st.one_of(st.integers(0, 3), st.just("lost")),
        # Rotting by inactivity: nothing has happened to it for this many days (its stamp written so: a write's
        # own touch is at the database's clock, which plain Python cannot know to the millisecond; tests/pipeline/
        # test_touches.py checks those), then perhaps a call logged as done this many hours after BASE.
        "untouched_days": st.integers(0, 400),
        "call_done": st.one_of(st.none(), st.integers(0, 24 * 300)),
    }
)
quota_strategy = st.fixed_dictionaries(
    {
        "holder": st.sampled_from(["user0", "user1", "user2", "teamA", "teamB"]),
        "start_month": st.integers(0, 15),  # months after January 2026
        "months": st.integers(1, 12),
        "amount": st.integers(0, 10**7).map(lambda cents: Decimal(cents) / 100),
    }
)
lead_strategy = st.fixed_dictionaries(
    {
        "owner": st.integers(0, 2),
        "source": st.sampled_from(SOURCES),
        "start": hours,
        "steps": st.lists(
            st.tuples(st.sampled_from(["contacted", "mql", "sql", "disqualified"]), st.integers(0, 24 * 40)),
            max_size=3,
        ),
    }
)


def _build(open_stages, deals, leads, quotas=()):
    team_a, team_b = make_team(name="A"), make_team(name="B")
    owners = [make_user(team=team_a), make_user(team=team_b), make_user(team=None)]
    reason = make_lost_reason()
    pipeline = make_pipeline(
        stages=[
            (f"S{index}", "open", probability, [], category)
            for index, (probability, category, _rotting) in enumerate(open_stages)
        ]
        + [("Won", "won", 100, [], "commit"), ("Lost", "lost", 0, [], "pipeline")]
    )
    for index, (_probability, _category, rotting_days) in enumerate(open_stages):
        pipeline.stages.filter(name=f"S{index}").update(rotting_days=rotting_days)
    by_name = {stage.name: stage for stage in pipeline.stages.all()}
    untouched = {}  # deal id → the last touch written over its stamp (the reference starts from it)

    def stage_for(choice):
        if choice in ("won", "lost"):
            return by_name[choice.capitalize()]
        return by_name[f"S{choice % len(open_stages)}"]

    for spec in deals:
        when = BASE + timedelta(hours=spec["start"])
        first = stage_for(spec["first"])
        deal = services.create_deal(
            actor=None,
            title="Deal",
            owner=owners[spec["owner"]],
            pipeline=pipeline,
            stage=first,
            lost_reason=reason if first.kind == "lost" else None,
            created_at=when,
            source=spec["source"],
            amount=spec["amount"],
            expected_close_date=None
            if spec["close_day"] is None
            else (AS_OF + timedelta(days=spec["close_day"])).date(),
        )
        for choice, gap in spec["moves"]:
            when += timedelta(hours=gap)
            target = stage_for(choice)
            deal = services.move_deal(
                deal=deal, stage=target, actor=None, at=when, lost_reason=reason if target.kind == "lost" else None
            )
        untouched[deal.pk] = leave_untouched(deal, days=spec["untouched_days"]).last_touched_at
        if spec["call_done"] is not None:
            done = BASE + timedelta(hours=spec["call_done"])
            services.log_activity(actor=None, owner=deal.owner, kind="call", subject="Call", deal=deal, done_at=done)
    for spec in quotas:
        start = _add_months(date(2026, 1, 1), spec["start_month"])
        holder = {"user0": {"user": owners[0]}, "user1": {"user": owners[1]}, "user2": {"user": owners[2]}}
        holder |= {"teamA": {"team": team_a}, "teamB": {"team": team_b}}
        Quota.objects.create(
            period_start=start,
            period_end=_add_months(start, spec["months"]),
            amount=spec["amount"],
            **holder[spec["holder"]],
        )
    for spec in leads:
        when = BASE + timedelta(hours=spec["start"])
        lead = services.create_lead(
            actor=None, owner=owners[spec["owner"]], last_name="L", created_at=when, source=spec["source"]
        )
        for status, gap in spec["steps"]:
            when += timedelta(hours=gap)
            lead = services.advance_lead(lead=lead, actor=None, status=status, at=when)
    return untouched


# --- The reference -----------------------------------------------------------------------------------------------


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _periods(moment: date) -> list[tuple[str, date]]:
    month = date(moment.year, moment.month, 1)
    quarter = date(moment.year, 3 * ((moment.month - 1) // 3) + 1, 1)
    return [("month", month), ("quarter", quarter), ("year", date(moment.year, 1, 1))]


STEP = {"month": 1, "quarter": 3, "year": 12}


def _local(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


def _groups(record, team_id, kinds=("owner", "team", "pipeline", "source")):
    keys = {
        "owner": record.owner_id,
        "team": team_id,
        "pipeline": getattr(record, "pipeline_id", None),
        "source": record.source,
    }
    return [("company", None)] + [(kind, keys[kind]) for kind in kinds]


def _days(delta: timedelta) -> float:
    return delta.total_seconds() / 86400


def _cents(value) -> Decimal:
    return Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _median(values):
    return statistics.median(values) if values else None


def _mean(values):
    return statistics.fmean(values) if values else None


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else None


def reference(tz: ZoneInfo, untouched: dict | None = None) -> dict:
    """Every shipped metric, keyed (metric, period_kind, period_start, group_kind, group key, stage or deal);
    `untouched`: the last touches written over the stamps of some deals (as they were left)."""
    teams = dict(User.objects.values_list("id", "team_id"))
    deals = list(Deal.objects.all())
    stages = {stage.id: stage for stage in Stage.objects.all()}
    changes = defaultdict(list)
    for change in StageChange.objects.order_by("changed_at", "id"):
        changes[change.deal_id].append(change)
    open_orders = lambda pipeline_id: sorted(  # noqa: E731
        (s for s in stages.values() if s.pipeline_id == pipeline_id and s.kind == "open"), key=lambda s: s.order
    )
    furthest = {}
    for deal in deals:
        orders = [stages[c.to_stage_id].order for c in changes[deal.id] if stages[c.to_stage_id].kind == "open"]
        furthest[deal.id] = float("inf") if deal.status == "won" else max(orders, default=None)
    result = {}

    # Win rate, average won deal size, sales cycle.
    outcomes = defaultdict(list)
    for deal in deals:
        if deal.status in ("won", "lost"):
            for kind, start in _periods(_local(deal.closed_at, tz)):
                for group in _groups(deal, teams[deal.owner_id]):
                    outcomes[("deal_outcomes", kind, start, *group, None)].append(deal)
    for key, closed in outcomes.items():
        won = [d for d in closed if d.status == "won"]
        lost = [d for d in closed if d.status == "lost"]
        won_amounts = [d.amount for d in won if d.amount is not None]
        result[key] = {
            "won": len(won),
            "lost": len(lost),
            "win_rate": len(won) / len(closed),
            "won_amount": sum(won_amounts, Decimal(0)),
            "avg_won_amount": _cents(sum(won_amounts) / len(won_amounts)) if won_amounts else None,
            "won_cycle_days_mean": _mean([_days(d.closed_at - d.created_at) for d in won]),
            "won_cycle_days_median": _median([_days(d.closed_at - d.created_at) for d in won]),
            "lost_cycle_days_mean": _mean([_days(d.closed_at - d.created_at) for d in lost]),
            "lost_cycle_days_median": _median([_days(d.closed_at - d.created_at) for d in lost]),
        }

    # Funnel.
    cohorts = defaultdict(list)
    for deal in deals:
        for kind, start in [*_periods(_local(deal.created_at, tz)), ("all", None)]:
            for group in _groups(deal, teams[deal.owner_id], kinds=("owner", "team", "source")):
                cohorts[(kind, start, *group, deal.pipeline_id)].append(deal)
    for (kind, start, group_kind, group_key, pipeline_id), cohort in cohorts.items():
        stage_list = open_orders(pipeline_id)
        reached = [sum(1 for d in cohort if (furthest[d.id] or 0) >= s.order) for s in stage_list]
        won = sum(1 for d in cohort if d.status == "won")
        for index, stage in enumerate(stage_list):
            following = reached[index + 1] if index + 1 < len(stage_list) else won
            result[("funnel", kind, start, group_kind, group_key, stage.id)] = {
                "reached": reached[index],
                "conversion": _ratio(following, reached[index]),
            }

    # Learned probability.
    window_start = AS_OF - timedelta(days=LOOKBACK_DAYS)
    closed_in_window = [d for d in deals if d.status != "open" and window_start <= d.closed_at <= AS_OF]
    learned_groups = defaultdict(list)
    for deal in closed_in_window:
        for group in _groups(deal, teams[deal.owner_id], kinds=("owner", "team", "source")):
            learned_groups[(*group, deal.pipeline_id)].append(deal)
    for pipeline_id in {s.pipeline_id for s in stages.values()}:
        learned_groups.setdefault(("company", None, pipeline_id), [])
    company_p = {}
    for (group_kind, group_key, pipeline_id), closed in learned_groups.items():
        for stage in open_orders(pipeline_id):
            reached_stage = [d for d in closed if (furthest[d.id] or 0) >= stage.order]
            w = sum(1 for d in reached_stage if d.status == "won")
            lost = len(reached_stage) - w
            p0 = Fraction(stage.probability, 100)
            p = (w + K * p0) / (w + lost + K)
            result[("learned_probability", "now", None, group_kind, group_key, stage.id)] = {"w": w, "l": lost, "p": p}
            if group_kind == "company":
                company_p[stage.id] = p

    # Forecast and past due.
    forecast = defaultdict(lambda: {"open": [], "won": []})
    today = _local(AS_OF, tz)
    past_due = defaultdict(lambda: {"count": 0, "amount": Decimal(0)})
    past_due[("past_due", "now", None, "company", None, None)]  # always written
    for deal in deals:
        if deal.status == "open" and deal.expected_close_date is not None:
            for kind, start in _periods(deal.expected_close_date):
                for group in _groups(deal, teams[deal.owner_id]):
                    forecast[("forecast", kind, start, *group, None)]["open"].append(deal)
        if deal.status == "won":
            for kind, start in _periods(_local(deal.closed_at, tz)):
                for group in _groups(deal, teams[deal.owner_id]):
                    forecast[("forecast", kind, start, *group, None)]["won"].append(deal)
        if deal.status == "open":
            for group in _groups(deal, teams[deal.owner_id]):
                row = past_due[("past_due", "now", None, *group, None)]
                if deal.expected_close_date is not None and deal.expected_close_date < today:
                    row["count"] += 1
                    row["amount"] += deal.amount or 0
    for key, facts in forecast.items():
        open_deals = [d for d in facts["open"] if d.amount is not None]
        result[key] = {
            "weighted_configured": _cents(sum(d.amount * stages[d.stage_id].probability / 100 for d in open_deals)),
            "weighted_learned": sum((Fraction(d.amount) * company_p[d.stage_id] for d in open_deals), Fraction(0)),
            "commit": sum((d.amount for d in open_deals if d.forecast_category == "commit"), Decimal(0)),
            "best_case": sum((d.amount for d in open_deals if d.forecast_category != "pipeline"), Decimal(0)),
            "pipeline": sum((d.amount for d in open_deals), Decimal(0)),
            "open_count": len(facts["open"]),
            "won_amount": sum((d.amount for d in facts["won"] if d.amount is not None), Decimal(0)),
        }
    result.update(past_due)

    # Time in stage.
    stage_facts = defaultdict(lambda: {"stays": [], "now": []})
    for deal in deals:
        history = changes[deal.id]
        groups = _groups(deal, teams[deal.owner_id], kinds=("owner", "team", "source"))
        for change, following in itertools.pairwise(history):
            for group in groups:
                stage_facts[("stage_time", "all", None, *group, change.to_stage_id)]["stays"].append(
                    _days(following.changed_at - change.changed_at)
                )
        if deal.status == "open":
            for group in groups:
                stage_facts[("stage_time", "all", None, *group, deal.stage_id)]["now"].append(
                    _days(AS_OF - deal.stage_entered_at)
                )
    for key, facts in stage_facts.items():
        result[key] = {
            "stays": len(facts["stays"]),
            "days_mean": _mean(facts["stays"]),
            "days_median": _median(facts["stays"]),
            "in_stage_now": len(facts["now"]),
            "now_age_days_median": _median(facts["now"]),
            "now_age_days_max": max(facts["now"], default=None),
        }

    # Stale deals (the random data plans no activity: every open deal lacks a next step). The last touch, by SPEC
    # §3a and pipeline.touches: the one written over its stamp, or a done activity after it.
    done = defaultdict(list)
    for activity in Activity.objects.filter(done_at__isnull=False):
        done[activity.deal_id].append(activity.done_at)
    # Their totals: per owner, team, pipeline and source, each stale deal once and per reason.
    stale_totals = defaultdict(lambda: defaultdict(Decimal))
    for deal in deals:
        if deal.status == "open":
            days = _days(AS_OF - deal.stage_entered_at)
            # The touch left over its stamp, or its done calls after it (all before the tests' clock).
            touched = max([(untouched or {}).get(deal.id, deal.last_touched_at), *done[deal.id]])
            rotting_days = stages[deal.stage_id].rotting_days
            reasons = {
                "in_stage_too_long": days > rotting_days,
                "no_next_step": True,
                "no_activity": _days(AS_OF - touched) > rotting_days,
            }
            result[("stale", "now", None, "owner", deal.owner_id, deal.id)] = {
                "rotting": days > rotting_days,
                **reasons,
                "days_since_touch": _days(AS_OF - touched),
                "amount": None if deal.amount is None else str(deal.amount),
            }
            totals = stale_totals[(deal.owner_id, (teams[deal.owner_id], deal.pipeline_id, deal.source))]
            for reason in ["total", *(name for name, stale in reasons.items() if stale)]:
                totals[f"{reason}_count"] += 1
                totals[f"{reason}_amount"] += deal.amount or Decimal(0)
    for (owner_id, group), totals in stale_totals.items():
        result[("stale_totals", "now", None, "owner", owner_id, group)] = {
            f"{reason}_{part}": int(totals[f"{reason}_count"]) if part == "count" else totals[f"{reason}_amount"]
            for reason in ("total", "in_stage_too_long", "no_next_step", "no_activity")
            for part in ("count", "amount")
        }

    # Leads.
    lead_counts = defaultdict(lambda: defaultdict(int))
    for lead in Lead.objects.all():
        groups = _groups(lead, teams[lead.owner_id], kinds=("owner", "team", "source"))
        for kind, start in _periods(_local(lead.created_at, tz)):
            for group in groups:
                counts = lead_counts[("leads", kind, start, *group, None)]
                counts["created"] += 1
                counts["mql"] += lead.mql_at is not None
                counts["sql"] += lead.sql_at is not None
                counts["converted"] += lead.converted_at is not None
        if lead.sql_at is not None:
            for kind, start in _periods(_local(lead.sql_at, tz)):
                for group in groups:
                    lead_counts[("leads", kind, start, *group, None)]["qualified"] += 1
                    lead_counts[("leads", kind, _add_months(start, STEP[kind]), *group, None)]["previous"] += 1
    for key, counts in lead_counts.items():
        result[key] = {
            "qualified": counts["qualified"],
            "qualified_previous": counts["previous"],
            "lead_velocity_rate": _ratio((counts["qualified"] - counts["previous"]) * 100, counts["previous"]),
            "created": counts["created"],
            "mql_to_sql_rate": _ratio(counts["sql"], counts["mql"]),
            "lead_to_deal_rate": _ratio(counts["converted"], counts["created"]),
        }
    # Quotas: the trailing four quarters are the complete ones before the quarter AS_OF falls in.
    as_of_local = _local(AS_OF, tz)
    trailing_end = date(as_of_local.year, 3 * ((as_of_local.month - 1) // 3) + 1, 1)
    trailing_start = _add_months(trailing_end, -12)
    for quota in Quota.objects.all():
        mine = [
            d for d in deals if (d.owner_id == quota.user_id if quota.user_id else teams[d.owner_id] == quota.team_id)
        ]
        won_in = [
            d for d in mine if d.status == "won" and quota.period_start <= _local(d.closed_at, tz) < quota.period_end
        ]
        won_amount = sum((d.amount for d in won_in if d.amount is not None), Decimal(0))
        open_amount = sum(
            (
                d.amount
                for d in mine
                if d.status == "open"
                and d.amount is not None
                and d.expected_close_date is not None
                and quota.period_start <= d.expected_close_date < quota.period_end
            ),
            Decimal(0),
        )
        trailing = [d for d in mine if d.status != "open" and trailing_start <= _local(d.closed_at, tz) < trailing_end]
        trailing_won = [d for d in trailing if d.status == "won"]
        won_amounts = [d.amount for d in trailing_won if d.amount is not None]
        remaining = max(quota.amount - won_amount, Decimal(0))
        if remaining == 0:
            needed = 0
        elif won_amounts and sum(won_amounts) > 0:
            average = Fraction(sum(won_amounts)) / len(won_amounts)
            needed = math.ceil(Fraction(remaining) / average / Fraction(len(trailing_won), len(trailing)))
        else:
            needed = None
        group = ("owner", quota.user_id) if quota.user_id else ("team", quota.team_id)
        result[("quota", "quota", quota.period_start, *group, quota.pk)] = {
            "won_amount": won_amount,
            "attainment": float(won_amount / quota.amount) if quota.amount else None,
            "open_amount": open_amount,
            "remaining": remaining,
            "coverage": float(open_amount / remaining) if remaining else None,
            "deals_needed": needed,
        }
    return result


# --- The comparison ----------------------------------------------------------------------------------------------

GROUP_KEY = {"company": lambda r: None, "owner": lambda r: r.owner_id, "team": lambda r: r.team_id}
GROUP_KEY |= {"pipeline": lambda r: r.pipeline_id, "source": lambda r: r.source}


def _computed() -> dict:
    rows = {}
    for metric in [
        "deal_outcomes",
        "funnel",
        "learned_probability",
        "forecast",
        "past_due",
        "stage_time",
        "stale",
        "stale_totals",
        "leads",
        "quota",
    ]:
        for row in latest_rows(metric):
            detail = {
                "stale": row.deal_id,
                "stale_totals": (row.team_id, row.pipeline_id, row.source),
                "quota": row.values.get("quota_id"),
            }.get(metric, row.stage_id)
            key = (metric, row.period_kind, row.period_start, row.group_kind, GROUP_KEY[row.group_kind](row), detail)
            assert key not in rows, f"duplicate row {key}"
            rows[key] = row.values
    return rows


def _same(name, expected, actual) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool):
        return expected is actual
    if isinstance(expected, Fraction):  # p is numeric to ~20 digits; weighted_learned is rounded to cents
        tolerance = Decimal("0.005000001") if name == "weighted_learned" else Decimal("1e-15")
        return abs(Decimal(str(actual)) - Decimal(expected.numerator) / Decimal(expected.denominator)) <= tolerance
    if isinstance(expected, Decimal):
        return Decimal(actual) == expected
    if isinstance(expected, float):
        return actual == pytest.approx(expected, rel=1e-9, abs=1e-9)
    return expected == actual


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    open_stages=stages_strategy,
    deals=st.lists(deal_strategy, max_size=8),
    leads=st.lists(lead_strategy, max_size=5),
    quotas=st.lists(quota_strategy, max_size=3),
    tz=st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"]),
)
def test_sql_metrics_equal_the_python_reference(open_stages, deals, leads, quotas, tz):
    with (
        override_settings(TIME_ZONE=tz, METRICS_PRIOR_STRENGTH=K, METRICS_LOOKBACK_DAYS=LOOKBACK_DAYS),
        transaction.atomic(),
    ):
        untouched = _build(open_stages, deals, leads, quotas)
        recompute_metrics(as_of=AS_OF)
        expected, actual = reference(ZoneInfo(tz), untouched), _computed()
        assert sorted(expected, key=str) == sorted(actual, key=str)
        for key, values in expected.items():
            for name, value in values.items():
                assert _same(name, value, actual[key][name]), (
                    f"{key} {name}: expected {value!r}, SQL gave {actual[key][name]!r}"
                )
        transaction.set_rollback(True)
