"""The metrics API over a custom range (`start` & `end`) and all time (`period=all`): one row per group, computed
live where no snapshot holds it; every group the caller may see answers, empty ones with counts 0 and rates null
(SPEC §3); bad ranges are a 400 naming the parameter; the query count does not grow with the data."""

from datetime import date
from decimal import Decimal

import pytest

from accounts.models import User
from forecasting.services import recompute_metrics
from tests.factories import make_user
from tests.forecasting.api.conftest import session_client
from tests.forecasting.conftest import AS_OF
from tests.forecasting.helpers import deal_with_history
from tests.queries import assert_query_count, capture_queries

pytestmark = pytest.mark.django_db

SPRING = {"start": "2026-03-01", "end": "2026-05-01"}  # two months: no snapshot holds it


@pytest.fixture
def spring(org, pipeline, lost_reason):
    """Closings in March and April 2026 (rep: won 100 in 10 days, won 300 in 30 days; other rep: lost in 4 days),
    one in June (outside), and an open deal expected to close in April; recomputed AS_OF."""
    paths = [
        (org.rep, Decimal("100"), [("Prospecting", "2026-03-01"), ("Won", "2026-03-11")]),
        (org.rep, Decimal("300"), [("Prospecting", "2026-03-20"), ("Won", "2026-04-19")]),
        (org.other_rep, None, [("Prospecting", "2026-04-01"), ("Lost", "2026-04-05")]),
        (org.rep, Decimal("999"), [("Prospecting", "2026-05-01"), ("Won", "2026-06-01")]),
    ]
    for owner, amount, path in paths:
        deal_with_history(owner=owner, pipeline=pipeline, amount=amount, lost_reason=lost_reason, path=path)
    deal_with_history(
        owner=org.teammate,
        pipeline=pipeline,
        amount=Decimal("1000"),
        expected_close_date=date(2026, 4, 15),
        path=[("Prospecting", "2026-02-01")],
    )
    recompute_metrics(as_of=AS_OF)


def test_a_custom_range_answers_one_row_for_the_range_with_medians(org, spring):
    body = session_client(org.admin).get("/api/v1/metrics/sales-cycle/", {**SPRING, "count": "true"}).json()
    assert body["count"] == 1 and body["out_of_date"] is False and body["age_seconds"] == 0
    row = body["results"][0]
    assert (row["period_kind"], row["period_start"], row["period_end"]) == ("range", "2026-03-01", "2026-05-01")
    assert (row["won"], row["lost"]) == (2, 1)
    assert (row["won_cycle_days_mean"], row["won_cycle_days_median"]) == (20.0, 20.0)
    assert (row["lost_cycle_days_mean"], row["lost_cycle_days_median"]) == (4.0, 4.0)
    rates = session_client(org.admin).get("/api/v1/metrics/win-rates/", SPRING).json()["results"]
    assert [(r["won"], r["lost"], r["win_rate"], r["won_amount"], r["avg_won_amount"]) for r in rates] == [
        (2, 1, 2 / 3, "400.00", "200.00")
    ]


def test_all_time_answers_one_row_per_group(org, spring):
    client = session_client(org.admin)
    rows = client.get("/api/v1/metrics/win-rates/", {"period": "all", "group": "owner"}).json()["results"]
    by_owner = {row["owner_id"]: (row["period_kind"], row["won"], row["lost"]) for row in rows}
    assert by_owner[org.rep.pk] == ("all", 3, 0)
    assert by_owner[org.other_rep.pk] == ("all", 0, 1)
    assert by_owner[org.teammate.pk] == ("all", 0, 0)
    assert set(by_owner) == set(User.objects.values_list("pk", flat=True))
    forecast = client.get("/api/v1/forecast/", {"period": "all"}).json()
    assert [(r["won_amount"], r["pipeline"], r["open_count"]) for r in forecast["results"]] == [
        ("1399.00", "1000.00", 1)
    ]
    assert forecast["learned_probabilities"]  # of the latest recompute, beside the live rows
    funnel = client.get("/api/v1/metrics/funnel/", {"period": "all", "group": "owner", "owner": org.teammate.pk})
    assert [row["reached"] for row in funnel.json()["results"]] == [1, 0, 0, 0, 0]


def test_the_forecast_and_the_funnel_of_a_range(org, pipeline, spring):
    client = session_client(org.admin)
    forecast = client.get("/api/v1/forecast/", SPRING).json()["results"]
    assert [(r["period_kind"], r["won_amount"], r["pipeline"], r["weighted_configured"]) for r in forecast] == [
        ("range", "400.00", "1000.00", "100.00")  # Prospecting's 10 %
    ]
    funnel = client.get("/api/v1/metrics/funnel/", {**SPRING, "pipeline": pipeline.pk}).json()["results"]
    assert [(row["reached"], row["cohort_deals"]) for row in funnel] == [(3, 3)] + [(2, 3)] * 4  # two won of three
    assert client.get("/api/v1/metrics/leads/", SPRING).json()["results"][0]["created"] == 0


def test_a_range_that_is_a_calendar_period_is_read_from_its_snapshot(org, spring):
    client = session_client(org.admin)
    march = client.get("/api/v1/metrics/win-rates/", {"start": "2026-03-01", "end": "2026-04-01"}).json()
    assert [(row["period_kind"], row["won"]) for row in march["results"]] == [("month", 1)]
    assert march["computed_at"].startswith("2026-11-25T12:00:00")  # the recompute's, not now


def test_empty_groups_answer_zeros_and_null_rates_for_what_the_caller_may_see(org, spring):
    july = {"period": "2026-07"}  # nothing closed
    admin = session_client(org.admin)
    company = admin.get("/api/v1/metrics/win-rates/", july).json()["results"]
    assert [(r["won"], r["lost"], r["win_rate"], r["avg_won_amount"]) for r in company] == [(0, 0, None, None)]
    cycle = admin.get("/api/v1/metrics/sales-cycle/", {"period": "2026-Q3"}).json()["results"]
    assert [(r["won_cycle_days_median"], r["lost_cycle_days_mean"]) for r in cycle] == [(None, None)]
    teams = admin.get("/api/v1/metrics/win-rates/", {**july, "group": "team"}).json()["results"]
    assert [(r["team_id"], r["won"]) for r in teams] == [(org.team.pk, 0), (org.other_team.pk, 0)]
    pipelines = admin.get("/api/v1/forecast/", {**july, "group": "pipeline"})
    assert [(r["pipeline"], r["open_count"]) for r in pipelines.json()["results"]] == [("0.00", 0)]

    rep = session_client(org.rep)
    assert rep.get("/api/v1/metrics/win-rates/", july).json()["results"] == []  # company rows: admins only
    mine = rep.get("/api/v1/metrics/win-rates/", {**july, "group": "owner"}).json()["results"]
    assert [(r["owner_id"], r["won"], r["win_rate"]) for r in mine] == [(org.rep.pk, 0, None)]
    assert rep.get("/api/v1/metrics/win-rates/", {**july, "group": "team"}).json()["results"] == []

    manager = session_client(org.manager)
    managed = manager.get("/api/v1/metrics/win-rates/", {**SPRING, "group": "team"}).json()["results"]
    assert [(r["team_id"], r["won"], r["lost"]) for r in managed] == [(org.team.pk, 2, 0)]  # not West's loss
    owners = manager.get("/api/v1/metrics/win-rates/", {**SPRING, "group": "owner"}).json()["results"]
    assert [(r["owner_id"], r["won"]) for r in owners] == [(org.manager.pk, 0), (org.rep.pk, 2), (org.teammate.pk, 0)]
    other = manager.get("/api/v1/metrics/win-rates/", {**SPRING, "group": "owner", "owner": org.other_rep.pk})
    assert other.json()["results"] == []
    leads = manager.get("/api/v1/metrics/leads/", {**july, "group": "owner"}).json()["results"]
    assert [(r["owner_id"], r["created"], r["lead_to_deal_rate"]) for r in leads][1] == (org.rep.pk, 0, None)


def test_an_owner_with_no_deals_has_a_funnel_of_zeros(org, pipeline, spring):
    newcomer = make_user(team=org.team)
    rows = session_client(org.manager).get("/api/v1/metrics/funnel/", {"group": "owner", "owner": newcomer.pk})
    body = rows.json()["results"]
    stages = list(pipeline.stages.filter(kind="open").order_by("order").values_list("pk", flat=True))
    assert [r["stage_id"] for r in body] == stages
    assert [(r["reached"], r["next_reached"], r["conversion"]) for r in body] == [(0, 0, None)] * 4 + [(0, None, None)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2026-05-01", "end": "2026-03-01"}, "end"),  # end before start
        ({"start": "2026-05-01", "end": "2026-05-01"}, "end"),  # empty
        ({"start": "2026-05-01"}, "end"),
        ({"end": "2026-05-01"}, "start"),
        ({"start": "1776-07-04", "end": "2026-01-01"}, "start"),
        ({"start": "0001-01-01", "end": "0002-01-01"}, "start"),
        ({"start": "2026-01-01", "end": "12026-01-01"}, "end"),
        ({"start": "2026-02-30", "end": "2026-03-01"}, "start"),
        ({"period": "ALL"}, "period"),
        ({"start": "2026-01-01", "end": "2026-02-15", "pipeline": "99999999999999999999"}, "pipeline"),  # > bigint
        ({"period": "all", "start": "2026-01-01", "end": "2026-02-01"}, "period"),
    ],
)
def test_a_bad_range_is_a_400_naming_the_parameter(admin, spring, params, field):
    for path in ("/api/v1/metrics/win-rates/", "/api/v1/forecast/", "/api/v1/metrics/leads/"):
        response = admin.get(path, params)
        assert response.status_code == 400, (path, response.content)
        assert list(response.json()) == [field], response.json()


def test_forecast_accuracy_has_no_all_time(admin, spring):
    response = admin.get("/api/v1/forecast/accuracy/", {"period": "all"})
    assert response.status_code == 400 and list(response.json()) == ["period"]
    assert admin.get("/api/v1/forecast/accuracy/", SPRING).status_code == 200  # the months within it, as before


@pytest.mark.parametrize(
    "params",
    [
        {**SPRING, "group": "owner"},
        {**SPRING, "group": "team"},
        {"period": "all", "group": "owner"},
        {"period": "2026-07", "group": "owner"},
    ],
)
@pytest.mark.parametrize("url", ["/api/v1/metrics/win-rates/", "/api/v1/forecast/", "/api/v1/metrics/funnel/"])
def test_window_and_period_reads_make_a_constant_number_of_queries(org, pipeline, spring, url, params):
    client = session_client(org.manager)
    with capture_queries() as few:
        assert client.get(url, params).status_code == 200
    for index in range(3):
        member = make_user(team=org.team)
        deal_with_history(
            owner=member,
            pipeline=pipeline,
            amount=Decimal(10),
            path=[("Prospecting", "2026-03-02"), ("Won", f"2026-04-0{index + 1}")],
        )
    recompute_metrics(as_of=AS_OF)
    with capture_queries() as many:
        body = client.get(url, params).json()
    assert len(body["results"]) > (3 if params["group"] == "owner" else 0)
    assert_query_count(few, many, at_most=10)


def test_the_schema_documents_all_time_and_ranges(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/metrics/win-rates/"]["get"]["parameters"]}
    assert "all" in parameters["period"]["schema"]["pattern"] and "all" in parameters["period"]["description"]
    assert "one row per group" in parameters["start"]["description"]
    kinds = schema["components"]["schemas"]["WinRateRow"]["properties"]["period_kind"]["allOf"][0]["$ref"]
    enum = schema["components"]["schemas"][kinds.rsplit("/", 1)[1]]["enum"]
    assert {"month", "quarter", "year", "all", "range"} <= set(enum)


def test_a_range_runs_from_local_midnight_to_local_midnight(org, pipeline, lost_reason, settings):
    settings.TIME_ZONE = "America/New_York"  # EST (UTC−5) on 1 March, EDT (UTC−4) on 1 May
    closings = [
        ("2026-03-01 04:59", "Lost"),  # 23:59 on 28 February in New York: before the range
        ("2026-03-01 05:00", "Won"),  # midnight, 1 March: the range's first instant
        ("2026-05-01 03:59", "Won"),  # 23:59 on 30 April: its last minute
        ("2026-05-01 04:00", "Lost"),  # midnight, 1 May: the first instant after it
    ]
    for closed, outcome in closings:
        path = [("Prospecting", "2026-02-01"), (outcome, closed)]
        deal_with_history(owner=org.rep, pipeline=pipeline, amount=Decimal(1), lost_reason=lost_reason, path=path)
    recompute_metrics(as_of=AS_OF)
    rows = session_client(org.admin).get("/api/v1/metrics/win-rates/", SPRING).json()["results"]
    assert [(row["won"], row["lost"]) for row in rows] == [(2, 0)]
    rows = session_client(org.admin).get("/api/v1/forecast/", SPRING).json()["results"]
    assert [row["won_count"] for row in rows] == [2]
