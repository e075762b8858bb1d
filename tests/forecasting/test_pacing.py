"""Pacing (SPEC §3a, `forecasting.selectors.forecast_pacing`) against a plain-Python reading of the same rows.

The reference reads every won and lost deal back as plain values and recomputes each number from the definition:
the day of the period in TIME_ZONE, each of the last four months' share of its wins reached by that day, their
median (over the months that won anything), pace, and the pipeline still needed at the trailing-four-quarter win
rate. The learned weighted forecast is the metrics engine's (its own tests check it), read from the run's rows.
"""

import statistics
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings

from forecasting.models import GroupKind, Metric, PeriodKind, Quota
from forecasting.periods import Period
from forecasting.selectors import forecast_pacing
from forecasting.services import recompute_metrics
from pipeline.models import Deal
from tests.forecasting.helpers import at, deal_with_history, latest_rows

pytestmark = pytest.mark.django_db

NOVEMBER = Period.parse("2026-11")
AT = at("2026-11-10 12:00")  # day 10 of November in UTC


def won(owner, pipeline, amount: str, when: str, **fields):
    day = (datetime.fromisoformat(when) - timedelta(days=3)).isoformat(sep=" ")
    return deal_with_history(
        owner=owner, pipeline=pipeline, amount=Decimal(amount), path=[("Prospecting", day), ("Won", when)], **fields
    )


def lost(owner, pipeline, lost_reason, when: str):
    day = (datetime.fromisoformat(when) - timedelta(days=3)).isoformat(sep=" ")
    return deal_with_history(
        owner=owner, pipeline=pipeline, lost_reason=lost_reason, path=[("Prospecting", day), ("Lost", when)]
    )


@pytest.fixture
def history(org, pipeline, lost_reason):
    """The rep's wins over July to November 2026 (none in August), the teammate's, another team's, a loss in the
    trailing quarters, an open deal expected in November, quotas for November; recomputed at AT."""
    won(org.rep, pipeline, "500", "2026-07-01 09:00")
    won(org.rep, pipeline, "2000", "2026-09-10 23:00")  # the last hour of day 10 in UTC
    won(org.rep, pipeline, "2000", "2026-09-11 02:00")  # day 11 in UTC, still day 10 in New York
    won(org.rep, pipeline, "1000", "2026-10-05 10:00")
    won(org.rep, pipeline, "3000", "2026-10-20 10:00")
    won(org.rep, pipeline, "1500", "2026-11-03 10:00")
    won(org.rep, pipeline, "700", "2026-11-10 13:00")  # after AT: not won yet at AT
    won(org.teammate, pipeline, "800", "2026-10-02 10:00")
    won(org.teammate, pipeline, "400", "2026-11-01 10:00")
    won(org.other_rep, pipeline, "9000", "2026-11-02 10:00")
    lost(org.rep, pipeline, lost_reason, "2026-08-15 10:00")
    lost(org.rep, pipeline, lost_reason, "2025-12-01 10:00")
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("4000"),
        expected_close_date=date(2026, 11, 25),
        path=[("Prospecting", "2026-10-01 10:00"), ("Negotiation", "2026-10-15 10:00")],
    )
    november = {"period_start": NOVEMBER.start, "period_end": NOVEMBER.end}
    Quota.objects.create(user=org.rep, amount=Decimal("10000"), **november)
    Quota.objects.create(team=org.team, amount=Decimal("15000"), **november)
    Quota.objects.create(team=org.other_team, amount=Decimal("20000"), **november)
    Quota.objects.create(
        user=org.teammate, amount=Decimal("3000"), period_start=date(2026, 10, 1), period_end=date(2027, 1, 1)
    )  # fmt: skip (a quarter's: not November's)
    recompute_metrics(as_of=AT)
    return org


def local_day(instant: datetime) -> date:
    return instant.astimezone(ZoneInfo(settings.TIME_ZONE)).date()


def reference(period: Period, *, instant: datetime, key_of, quotas: dict, weighted: dict) -> dict:
    """{group: {day, won_to_date, shares, expected_share, pace, pipeline_needed}} by SPEC §3a, in plain Python."""
    deals = list(Deal.objects.values("status", "amount", "closed_at", "owner_id", "owner__team_id"))
    closed = [deal for deal in deals if deal["status"] in ("won", "lost")]
    today = local_day(instant)
    days = (period.end - period.start).days
    day = min(max((today - period.start).days + 1, 0), days)
    months = [period]
    for _ in range(4):
        months.append(months[-1].previous())

    def won_between(key, first: date, last: date, before: datetime | None = None) -> Fraction:
        return sum(
            (
                Fraction(deal["amount"])
                for deal in closed
                if deal["status"] == "won"
                and key_of(deal) == key
                and first <= local_day(deal["closed_at"]) < last
                and (before is None or deal["closed_at"] < before)
            ),
            Fraction(0),
        )

    quarter = Period.containing(today, PeriodKind.QUARTER)
    trailing_start = quarter.start.replace(year=quarter.start.year - 1)
    answers = {}
    for key in {key_of(deal) for deal in closed} | set(quotas):
        won_to_date = won_between(key, period.start, period.end, before=instant)
        shares = []
        for month in months[1:]:
            total = won_between(key, month.start, month.end)
            by_day = won_between(key, month.start, min(month.start + timedelta(days=day), month.end))
            if total:
                shares.append(by_day / total)
        expected = statistics.median(shares) if shares else None
        quota = quotas.get(key)
        pace = None
        if quota is not None and expected:
            pace = won_to_date / (quota * expected)
        in_trailing = [
            deal
            for deal in closed
            if key_of(deal) == key and trailing_start <= local_day(deal["closed_at"]) < quarter.start
        ]
        trailing_won = sum(deal["status"] == "won" for deal in in_trailing)
        needed = None
        if quota is not None:
            remaining = max(quota - won_to_date - Fraction(weighted.get(key, 0)), Fraction(0))
            if remaining == 0:
                needed = Fraction(0)
            elif trailing_won:
                needed = remaining / Fraction(trailing_won, len(in_trailing))
        answers[key] = {
            "day": day,
            "won_to_date": won_to_date,
            "shares": shares,
            "expected_share": expected,
            "pace": pace,
            "pipeline_needed": needed,
        }
    return answers


def close(decimal: Decimal | None, fraction: Fraction | None, places: int = 20) -> bool:
    if decimal is None or fraction is None:
        return decimal is None and fraction is None
    return abs(Fraction(decimal) - fraction) < Fraction(1, 10**places)


def assert_matches(pacing, expected: dict) -> None:
    assert set(expected) <= {row.key for row in pacing.rows}
    for row in pacing.rows:
        if row.key not in expected:
            assert row.won_to_date == 0 and row.quota is None, row
            continue
        want = expected[row.key]
        assert pacing.day == want["day"]
        assert close(row.won_to_date, want["won_to_date"]), row.key
        assert [pace.share for pace in row.history if pace.share is not None] == [
            Decimal(share.numerator) / share.denominator for share in want["shares"]
        ], row.key
        assert close(row.expected_share, want["expected_share"]), row.key
        assert close(row.pace, want["pace"]), row.key
        assert close(row.pipeline_needed, want["pipeline_needed"], places=2), row.key  # to the cent


def weighted(group: str) -> dict:
    column = {GroupKind.OWNER: "owner_id", GroupKind.TEAM: "team_id"}.get(group)
    rows = latest_rows(Metric.FORECAST, group_kind=group, period_kind="month", period_start=NOVEMBER.start)
    return {getattr(row, column) if column else None: Decimal(row.values["weighted_learned"]) for row in rows}


def test_pacing_per_owner_matches_the_plain_reading(history):
    org = history
    pacing = forecast_pacing(user=org.admin, period=NOVEMBER, group=GroupKind.OWNER, at=AT)
    quotas = {org.rep.pk: Fraction(10000)}
    expected = reference(
        NOVEMBER, instant=AT, key_of=lambda deal: deal["owner_id"], quotas=quotas, weighted=weighted("owner")
    )
    assert_matches(pacing, expected)
    rep = next(row for row in pacing.rows if row.key == org.rep.pk)
    # By hand: shares 1000/4000 (October), 2000/4000 (September), none in August, 500/500 (July): median 0.5;
    # won 1500 of the 10000 × 0.5 expected by day 10.
    assert (pacing.day, pacing.days) == (10, 30)
    assert [pace.share for pace in rep.history] == [Decimal("0.25"), Decimal("0.5"), None, Decimal(1)]
    assert rep.expected_share == Decimal("0.5") and rep.pace == Decimal("0.3")
    # Trailing quarters (Q4 2025 to Q3 2026): July and two in September won, August and December 2025 lost.
    assert (rep.trailing_won, rep.trailing_closed) == (3, 5)
    assert rep.pipeline_needed == ((10000 - 1500 - rep.weighted_learned) * Decimal(5) / 3).quantize(Decimal("0.01"))
    assert rep.weighted_learned > 0
    teammate = next(row for row in pacing.rows if row.key == org.teammate.pk)
    assert teammate.quota is None and teammate.pace is None and teammate.pipeline_needed is None  # no quota
    assert teammate.expected_share == Decimal(1)  # October's 800 came on day 2, all of it by day 10
    assert teammate.won_to_date == Decimal(400)


def test_pacing_per_team_and_for_the_company_matches_the_plain_reading(history):
    org = history
    team_quotas = {org.team.pk: Fraction(15000), org.other_team.pk: Fraction(20000)}
    teams = forecast_pacing(user=org.admin, period=NOVEMBER, group=GroupKind.TEAM, at=AT)
    expected = reference(
        NOVEMBER, instant=AT, key_of=lambda deal: deal["owner__team_id"], quotas=team_quotas, weighted=weighted("team")
    )
    assert_matches(teams, expected)
    assert {row.key for row in teams.rows} == {org.team.pk, org.other_team.pk}
    west = next(row for row in teams.rows if row.key == org.other_team.pk)
    assert west.expected_share is None and west.pace is None  # no history: nothing won in July to October
    assert west.won_to_date == Decimal(9000) and west.trailing_closed == 0 and west.pipeline_needed is None

    company = forecast_pacing(user=org.admin, period=NOVEMBER, group=GroupKind.COMPANY, at=AT)
    expected = reference(
        NOVEMBER, instant=AT, key_of=lambda deal: None, quotas={None: Fraction(35000)}, weighted=weighted("company")
    )
    assert_matches(company, expected)
    assert [row.quota for row in company.rows] == [Decimal(35000)]  # the teams' quotas added up


def test_the_day_and_the_wins_by_it_are_local_to_the_time_zone(history, settings):
    settings.TIME_ZONE = "America/New_York"
    org = history
    instant = at("2026-11-11 03:00")  # still 10 November in New York
    pacing = forecast_pacing(user=org.admin, period=NOVEMBER, group=GroupKind.OWNER, at=instant)
    expected = reference(NOVEMBER, instant=instant, key_of=lambda deal: deal["owner_id"],
                         quotas={org.rep.pk: Fraction(10000)}, weighted=weighted("owner"))  # fmt: skip
    assert_matches(pacing, expected)
    rep = next(row for row in pacing.rows if row.key == org.rep.pk)
    assert pacing.day == 10
    assert rep.history[1].share == Decimal(1)  # both September wins fell on 10 September in New York
    assert rep.won_to_date == Decimal(2200)  # 13:00 UTC on 10 November is before 03:00 UTC on the 11th


def test_a_period_not_begun_is_day_zero_and_an_ended_one_its_last_day(history):
    org = history
    ahead = forecast_pacing(user=org.admin, period=Period.parse("2027-01"), group=GroupKind.OWNER, at=AT)
    assert ahead.day == 0
    assert all(row.won_to_date == 0 and row.pace is None for row in ahead.rows)
    october = Period.parse("2026-10")
    ended = forecast_pacing(user=org.admin, period=october, group=GroupKind.OWNER, at=AT)
    assert (ended.day, ended.days) == (31, 31)
    rep = next(row for row in ended.rows if row.key == org.rep.pk)
    assert rep.won_to_date == Decimal(4000)
    assert [pace.share for pace in rep.history] == [Decimal(1), None, Decimal(1), None]  # Sep, Aug, Jul, Jun


def test_a_rep_sees_their_own_pacing_and_the_company_is_the_admins(history, settings):
    org = history
    rows = forecast_pacing(user=org.rep, period=NOVEMBER, group=GroupKind.OWNER, at=AT).rows
    assert [row.key for row in rows] == [org.rep.pk]
    assert forecast_pacing(user=org.rep, period=NOVEMBER, group=GroupKind.TEAM, at=AT).rows == ()
    assert forecast_pacing(user=org.manager, period=NOVEMBER, group=GroupKind.COMPANY, at=AT).rows == ()
    managed = forecast_pacing(user=org.manager, period=NOVEMBER, group=GroupKind.OWNER, at=AT).rows
    assert {row.key for row in managed} == {org.rep.pk, org.teammate.pk, org.manager.pk}
    teams = forecast_pacing(user=org.manager, period=NOVEMBER, group=GroupKind.TEAM, at=AT).rows
    assert [row.key for row in teams] == [org.team.pk]
    settings.REP_VISIBILITY = "team"
    teams = forecast_pacing(user=org.rep, period=NOVEMBER, group=GroupKind.TEAM, at=AT).rows
    assert [row.key for row in teams] == [org.team.pk]
    assert teams[0].won_to_date == Decimal(1900)  # the rep's 1500 and the teammate's 400


def test_the_pacing_endpoint_answers_the_selectors_numbers(history, client):
    org = history
    client.force_login(org.rep)
    body = client.get("/api/v1/forecast/pacing/?period=2026-11&group=owner").json()
    now = forecast_pacing(user=org.rep, period=NOVEMBER, group=GroupKind.OWNER)
    assert (body["period"], body["day"], body["days"]) == ("2026-11", now.day, 30)
    (row,) = body["results"]
    (want,) = now.rows
    assert row["key"] == org.rep.pk
    assert Decimal(row["won_to_date"]) == want.won_to_date and Decimal(row["quota"]) == Decimal(10000)
    assert Decimal(row["weighted_learned"]) == want.weighted_learned
    assert row["trailing_win_rate"] == pytest.approx(float(want.trailing_win_rate))
    assert [pace["period"] for pace in row["history"]] == ["2026-10", "2026-09", "2026-08", "2026-07"]
    assert row["history"][2] == {"period": "2026-08", "won_by_day": "0.00", "won": "0.00", "share": None}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("period=2026-13", "period"),
        ("period=all", "period"),
        ("period=2026-11&group=pipeline", "group"),
        ("", "period"),
    ],
)
def test_the_pacing_endpoint_refuses_bad_parameters_by_name(org, client, query, field):
    client.force_login(org.admin)
    response = client.get(f"/api/v1/forecast/pacing/?{query}")
    assert response.status_code == 400
    assert field in response.json()
