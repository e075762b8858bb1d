"""The backtest (SPEC §3a, `forecasting.metrics.backtest`): every number of every row recomputed in plain Python from
the same rows (the stage changes, the deal history, the deals), with the learned probability at each instant from
what was known then only."""

import random
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings as django_settings

from forecasting.models import Metric
from forecasting.periods import Period
from forecasting.selectors import learning_settings
from forecasting.services import recompute_history_metrics, recompute_metrics
from pipeline.models import Deal, DealState, Stage, StageChange, StageState
from tests.forecasting.helpers import at, deal_with_history, latest_rows

pytestmark = pytest.mark.django_db

AS_OF = at("2026-12-02 12:00")
CENT = Decimal("0.01")
STAGES = ["Prospecting", "Qualification", "Discovery", "Proposal", "Negotiation", "Won", "Lost"]


@pytest.fixture
def history(org, pipeline, lost_reason):
    """Deals moved through the classic stages from June to November 2026: a few by hand (a reopened win, a loss
    after Negotiation, a deal without amount), the rest at random from a fixed seed."""
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("1000"),
        expected_close_date="2026-08-15",
        path=[("Prospecting", "2026-06-20"), ("Proposal", "2026-07-10"), ("Won", "2026-08-05")],
    )
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        lost_reason=lost_reason,
        amount=Decimal("2000"),
        expected_close_date="2026-08-31",
        path=[("Qualification", "2026-07-01"), ("Negotiation", "2026-07-20"), ("Lost", "2026-08-20")],
    )
    deal_with_history(
        owner=org.teammate,
        pipeline=pipeline,
        amount=Decimal("3000.50"),
        expected_close_date="2026-09-30",
        path=[
            ("Discovery", "2026-07-05"),
            ("Won", "2026-09-03"),
            ("Negotiation", "2026-09-10"),
            ("Won", "2026-10-02"),
        ],
    )
    deal_with_history(
        owner=org.other_rep,
        pipeline=pipeline,
        amount=Decimal("5000"),
        expected_close_date="2026-10-31",
        path=[("Proposal", "2026-09-01"), ("Won", "2026-10-20")],
    )
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=None,
        expected_close_date="2026-11-15",
        path=[("Prospecting", "2026-10-01")],
    )
    rng = random.Random(15)
    owners = [org.rep, org.teammate, org.other_rep]
    for _ in range(14):
        moment = datetime(2026, 6, 10, 9) + timedelta(hours=rng.randrange(0, 24 * 150))
        path, previous = [], None
        for _ in range(rng.randint(1, 4)):
            name = rng.choice([s for s in STAGES if s != previous])
            path.append((name, moment.strftime("%Y-%m-%d %H:%M")))
            previous = name
            moment += timedelta(hours=rng.randrange(1, 24 * 40))
            if moment > datetime(2026, 12, 1):
                break
        deal_with_history(
            owner=rng.choice(owners),
            pipeline=pipeline,
            lost_reason=lost_reason,
            amount=Decimal(rng.randrange(100, 900000)) / 100,
            expected_close_date=date(2026, 7, 1) + timedelta(days=rng.randrange(0, 170)),
            path=path,
        )


# --- The plain-Python backtest ----------------------------------------------------------------------------------------


def local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time.min, ZoneInfo(tz))


def expected_instants(tz: str) -> list[tuple[str, Period, int, datetime]]:
    """(kind, period, week, T) of every ended month and quarter starting inside the recorded history."""
    first = min(StageChange.objects.values_list("changed_at", flat=True))
    today = AS_OF.astimezone(ZoneInfo(tz)).date()
    found = []
    for kind in ("month", "quarter"):
        period = Period.containing(first.astimezone(ZoneInfo(tz)).date(), kind)
        while period.end <= Period.containing(today, kind).start:
            if local_midnight(period.start, tz) >= first:
                days = [period.start] + [
                    period.start + timedelta(days=n)
                    for n in range(1, (period.end - period.start).days)
                    if (period.start + timedelta(days=n)).weekday() == 0
                ]
                found += [(kind, period, week, local_midnight(day, tz)) for week, day in enumerate(days)]
            period = period.next()
    return found


def configured_at(stage_id: int, moment: datetime) -> Decimal:
    """The stage's configured probability at `moment`, as a fraction, from its history."""
    for state in StageState.objects.filter(stage_id=stage_id):
        if state.valid_from <= moment and (state.valid_to is None or state.valid_to > moment):
            return Decimal(state.probability) / 100
    raise AssertionError(f"stage {stage_id} has no state at {moment}")


def learned_at(moment: datetime) -> dict[int, Decimal]:
    """SPEC §3a: the learned probability of every open stage at `moment`, from the closes known then."""
    learning = learning_settings()
    stages = {s.pk: s for s in Stage.objects.all()}
    changes = list(StageChange.objects.order_by("changed_at", "id"))
    counts = []  # (pipeline, reached, won)
    for change in changes:
        closed = stages[change.to_stage_id]
        if closed.kind == "open" or change.changed_at > moment or (change.left_at and change.left_at <= moment):
            continue
        if learning.lookback_days and change.changed_at < moment - timedelta(days=learning.lookback_days):
            continue
        reached = max(
            (
                stages[c.to_stage_id].order
                for c in changes
                if c.deal_id == change.deal_id
                and c.changed_at <= change.changed_at
                and stages[c.to_stage_id].kind == "open"
            ),
            default=-1,
        )
        counts.append((closed.pipeline_id, 32767 if closed.kind == "won" else reached, closed.kind == "won"))
    k = Decimal(learning.prior_strength)
    learned = {}
    for s in stages.values():
        if s.kind != "open":
            continue
        w = sum(1 for p, r, won in counts if p == s.pipeline_id and r >= s.order and won)
        lost = sum(1 for p, r, won in counts if p == s.pipeline_id and r >= s.order and not won)
        p0 = configured_at(s.pk, moment)
        learned[s.pk] = (w + k * p0) / (w + lost + k)
    return learned


def expected_rows(tz: str, group_of, *, company: bool = False) -> dict:
    """{(kind, period start, week, group): numbers} by SPEC §3a, in plain Python; the company (group None) has a row
    at every instant."""
    stages = {s.pk: s for s in Stage.objects.all()}
    states = list(DealState.objects.all())
    deals = {d.pk: d for d in Deal.objects.all()}
    rows = {}
    for kind, period, week, moment in expected_instants(tz):
        learned = learned_at(moment)
        sums: dict = {}
        for state in states:
            stage = stages[state.stage_id]
            holds = state.valid_from <= moment and (state.valid_to is None or state.valid_to > moment)
            close = state.expected_close_date
            if not holds or stage.kind != "open" or close is None or not period.start <= close < period.end:
                continue
            amount = state.amount
            for group in {group_of(state.owner_id, deals.get(state.deal_id))}:
                entry = sums.setdefault(group, dict.fromkeys(["pipeline", "conf", "learned", "commit", "best"], 0))
                entry.setdefault("count", 0)
                entry["count"] += 1
                if amount is None:
                    continue
                entry["pipeline"] += amount
                entry["conf"] += amount * configured_at(stage.pk, moment)
                entry["learned"] += amount * learned[stage.pk]
                entry["commit"] += amount if state.forecast_category == "commit" else 0
                entry["best"] += amount if state.forecast_category in ("commit", "best_case") else 0
        won: dict = {}
        for deal in deals.values():
            if deal.status == "won" and period.start <= deal.closed_at.astimezone(ZoneInfo(tz)).date() < period.end:
                for group in {group_of(deal.owner_id, deal)}:
                    won[group] = won.get(group, 0) + (deal.amount or 0)
        for group in ({None} if company else set()) | set(sums) | set(won):
            entry = sums.get(group, {})
            actual = Decimal(won.get(group, 0))

            def ape(forecast, actual=actual):
                return None if actual == 0 else float(abs(actual - Decimal(forecast)) / actual)

            rows[kind, period.start, week, group] = {
                "at": moment,
                "open_count": entry.get("count", 0),
                "pipeline": Decimal(entry.get("pipeline", 0)),
                "weighted_configured": Decimal(entry.get("conf", 0)).quantize(CENT),
                "weighted_learned": Decimal(entry.get("learned", 0)).quantize(CENT),
                "commit": Decimal(entry.get("commit", 0)),
                "best_case": Decimal(entry.get("best", 0)),
                "actual_won": actual,
                "ape_configured": ape(Decimal(entry.get("conf", 0)).quantize(CENT)),
                "ape_commit": ape(entry.get("commit", 0)),
                "ape_best_case": ape(entry.get("best", 0)),
            }
    return rows


def computed_rows(group_kind: str, column: str | None) -> dict:
    rows = {}
    for row in latest_rows(Metric.BACKTEST, group_kind=group_kind):
        values = row.values
        group = getattr(row, column) if column else None
        rows[row.period_kind, row.period_start, values["week"], group] = values
    return rows


def assert_same(expected: dict, computed: dict) -> None:
    assert set(computed) == set(expected)
    for key, numbers in expected.items():
        values = computed[key]
        assert datetime.fromisoformat(values["at"]) == numbers["at"], key
        assert values["open_count"] == numbers["open_count"], key
        for name in ("pipeline", "weighted_configured", "commit", "best_case", "actual_won"):
            assert Decimal(values[name]) == numbers[name], (key, name)
        # The learned probability is a numeric division in SQL: equal to the cent but for the last digit's rounding.
        assert abs(Decimal(values["weighted_learned"]) - numbers["weighted_learned"]) <= CENT, key
        for name in ("ape_configured", "ape_commit", "ape_best_case"):
            expected_ape = numbers[name]
            assert values[name] == (None if expected_ape is None else pytest.approx(expected_ape, rel=1e-9)), key
        if numbers["actual_won"]:
            learned = abs(numbers["actual_won"] - Decimal(values["weighted_learned"])) / numbers["actual_won"]
            assert values["ape_learned"] == pytest.approx(float(learned), rel=1e-9), key
        else:
            assert values["ape_learned"] is None


@pytest.mark.parametrize(("tz", "lookback"), [("UTC", 365), ("UTC", 30), ("America/New_York", 0), ("Asia/Tokyo", 45)])
def test_backtest_rows_are_the_forecast_at_each_instant_against_the_won_amount(history, settings, tz, lookback):
    settings.TIME_ZONE = tz
    settings.METRICS_LOOKBACK_DAYS = lookback
    recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)

    assert_same(expected_rows(tz, lambda owner, deal: None, company=True), computed_rows("company", None))
    assert_same(expected_rows(tz, lambda owner, deal: owner), computed_rows("owner", "owner_id"))


def test_backtest_groups_by_team_pipeline_and_source(history, org):
    recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)
    teams = {org.rep.pk: org.rep.team_id, org.teammate.pk: org.teammate.team_id}
    teams[org.other_rep.pk] = org.other_rep.team_id
    tz = django_settings.TIME_ZONE

    assert_same(expected_rows(tz, lambda owner, deal: teams[owner]), computed_rows("team", "team_id"))
    assert_same(expected_rows(tz, lambda owner, deal: deal.pipeline_id), computed_rows("pipeline", "pipeline_id"))
    assert_same(expected_rows(tz, lambda owner, deal: deal.source), computed_rows("source", "source"))


def test_backtest_counts_a_deal_won_later_as_open_at_the_earlier_instants(org, pipeline):
    """No look-ahead: at every instant of August the deal is open, and nothing had closed to learn from."""
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("100"),
        expected_close_date="2026-08-20",
        path=[("Proposal", "2026-06-01"), ("Won", "2026-08-31 10:00")],
    )
    recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)
    august = {
        r.values["week"]: r.values
        for r in latest_rows(Metric.BACKTEST, group_kind="company", period_kind="month", period_start=date(2026, 8, 1))
    }
    # Open at every instant of August (won at 10:00 on the 31st, its last Monday): 100 × 0.6 configured, and
    # learned from nothing closed yet, so p0 too.
    assert sorted(august) == [0, 1, 2, 3, 4, 5]
    assert all(v["weighted_configured"] == "60.00" and v["weighted_learned"] == "60.00" for v in august.values())
    assert all(v["actual_won"] == "100.00" and v["ape_configured"] == pytest.approx(0.4) for v in august.values())


def test_the_configured_probability_is_the_one_of_each_instant(org, pipeline, history, settings):
    """Proposal was at 30 % until 15 August 2026, then 60 %: August's first instants weigh its deals at 30 %."""
    proposal = Stage.objects.get(pipeline=pipeline, name="Proposal")
    StageState.objects.filter(stage_id=proposal.pk).delete()
    StageState.objects.bulk_create(
        [
            StageState(
                stage_id=proposal.pk,
                valid_from=datetime.min.replace(tzinfo=AS_OF.tzinfo),
                valid_to=at("2026-08-15"),
                probability=30,
                forecast_category="best_case",
            ),
            StageState(
                stage_id=proposal.pk, valid_from=at("2026-08-15"), probability=60, forecast_category="best_case"
            ),
        ]
    )
    recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)

    assert configured_at(proposal.pk, at("2026-08-10")) == Decimal("0.3")
    assert_same(expected_rows("UTC", lambda owner, deal: None, company=True), computed_rows("company", None))
