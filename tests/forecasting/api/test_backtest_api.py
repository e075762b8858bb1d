"""GET /api/v1/forecast/backtest/: the backtest rows of the latest recompute by visibility, WAPE and bias recomputed
in plain Python from the rows answered, and bad parameters answered 400 naming them."""

from datetime import date
from decimal import Decimal

import pytest

from forecasting.models import Metric
from forecasting.services import recompute_history_metrics, recompute_metrics
from tests.forecasting.api.conftest import session_client
from tests.forecasting.helpers import deal_with_history, latest_rows
from tests.forecasting.test_backtest import AS_OF, history  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

URL = "/api/v1/forecast/backtest/"


def walk(client, params: dict) -> tuple[list[dict], dict]:
    """Every row of a read (following `next`) and the first page's body."""
    first = client.get(URL, params | {"page_size": 7})
    assert first.status_code == 200, first.content
    body, rows = first.json(), []
    page = body
    while True:
        rows += page["results"]
        if not page["next"]:
            return rows, body
        page = client.get(page["next"]).json()


def plain_summary(rows: list[dict]) -> dict:
    """{week: (wape, bias) of the configured and of the learned forecast} by SPEC §3a."""
    weeks: dict = {}
    for row in rows:
        weeks.setdefault(row["week"], []).append(row)
    found = {}
    for week, of_week in weeks.items():
        actual = sum(Decimal(r["actual_won"]) for r in of_week)
        numbers = []
        for key in ("weighted_configured", "weighted_learned", "commit", "best_case"):
            error = sum(abs(Decimal(r["actual_won"]) - Decimal(r[key])) for r in of_week)
            over = sum(Decimal(r[key]) - Decimal(r["actual_won"]) for r in of_week)
            numbers += [None, None] if not actual else [float(error / actual), float(over / actual)]
        found[week] = (len(of_week), actual, *numbers)
    return found


def assert_same_summary(body: dict, rows: list[dict]) -> None:
    computed, expected = summary_of(body), plain_summary(rows)
    assert set(computed) == set(expected)
    for week, numbers in expected.items():
        assert computed[week][:2] == numbers[:2], week
        for got, want in zip(computed[week][2:], numbers[2:], strict=True):
            assert got == (None if want is None else pytest.approx(want, rel=1e-9)), week


def summary_of(body: dict) -> dict:
    return {
        s["week"]: (
            s["rows"],
            Decimal(s["actual_won"]),
            *(
                s[f"{measure}_{name}"]
                for name in ("configured", "learned", "commit", "best_case")
                for measure in ("wape", "bias")
            ),
        )
        for s in body["summary"]
    }


def test_the_admin_reads_every_month_and_its_summary_over_all_pages(org, history):  # noqa: F811
    recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)
    rows, body = walk(session_client(org.admin), {})
    snapshot = latest_rows(Metric.BACKTEST, group_kind="company", period_kind="month")
    assert len(rows) == len(snapshot) > 7  # more than a page
    assert {(r["period_start"], r["week"]) for r in rows} == {
        (s.period_start.isoformat(), s.values["week"]) for s in snapshot
    }
    assert body["metric"] == "backtest" and body["group"] == "company"
    assert_same_summary(body, rows)
    # The learned forecast differs from the configured one somewhere: the history taught the CRM something.
    assert any(r["weighted_learned"] != r["weighted_configured"] for r in rows)


def test_a_quarter_per_owner_and_its_summary(org, history):  # noqa: F811
    recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)
    rows, body = walk(session_client(org.admin), {"period": "2026-Q3", "group": "owner"})
    assert {r["period_start"] for r in rows} == {"2026-07-01"} and {r["period_kind"] for r in rows} == {"quarter"}
    assert {r["owner_id"] for r in rows} <= {org.rep.pk, org.teammate.pk, org.other_rep.pk}
    assert_same_summary(body, rows)


def test_quarters_within_a_range(org, history):  # noqa: F811
    recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)
    rows, _ = walk(session_client(org.admin), {"start": "2026-01-01", "end": "2027-01-01", "period_kind": "quarter"})
    assert {r["period_start"] for r in rows} == {"2026-07-01"}  # Q4 has not ended; Q3 is the first in the history


def test_a_rep_sees_their_own_rows_and_a_manager_their_team(org, pipeline):
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal(700),
        expected_close_date=date(2026, 10, 20),
        path=[("Proposal", "2026-09-01"), ("Won", "2026-10-11")],
    )
    deal_with_history(
        owner=org.other_rep,
        pipeline=pipeline,
        amount=Decimal(900),
        expected_close_date=date(2026, 10, 20),
        path=[("Proposal", "2026-09-01")],
    )
    recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)
    rep = session_client(org.rep)
    assert rep.get(URL, {"period": "2026-10"}).json()["results"] == []  # no company row for a rep
    owners = rep.get(URL, {"period": "2026-10", "group": "owner"}).json()
    assert {r["owner_id"] for r in owners["results"]} == {org.rep.pk}
    # Only the rep's rows in the summary too: 700 won on 11 October; forecast 700 × 0.6 configured on the 1st and
    # the 5th, nothing open on the later Mondays (12th, 19th, 26th).
    summary = {s["week"]: s for s in owners["summary"]}
    assert {s["actual_won"] for s in summary.values()} == {"700.00"}
    assert [(summary[w]["wape_configured"], summary[w]["bias_configured"]) for w in sorted(summary)] == [
        (pytest.approx(0.4), pytest.approx(-0.4)),
        (pytest.approx(0.4), pytest.approx(-0.4)),
        (1.0, -1.0),
        (1.0, -1.0),
        (1.0, -1.0),
    ]
    manager = session_client(org.manager)
    teams = manager.get(URL, {"period": "2026-10", "group": "team"}).json()["results"]
    assert {r["team_id"] for r in teams} == {org.team.pk}
    assert {r["owner_id"] for r in manager.get(URL, {"group": "owner"}).json()["results"]} <= {
        org.rep.pk,
        org.teammate.pk,
        org.manager.pk,
    }


def test_before_the_first_recompute_there_is_nothing(org):
    body = session_client(org.admin).get(URL).json()
    assert body["results"] == [] and body["summary"] == [] and body["computed_at"] is None


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"period": "2026"}, "period"),
        ({"period": "all"}, "period"),
        ({"period": "2026-13"}, "period"),
        ({"group": "galaxy"}, "group"),
        ({"start": "2026-01-01", "end": "2027-01-01", "period_kind": "year"}, "period_kind"),
        ({"start": "2026-01-01"}, "end"),
        ({"period_kind": "quarter"}, "period_kind"),
        ({"owner": "x"}, "owner"),
    ],
)
def test_bad_parameters_answer_400_naming_them(org, params, named):
    response = session_client(org.admin).get(URL, params)
    assert response.status_code == 400
    assert named in response.json()
