"""The forecast call's endpoints (issue 16, item 7): /api/v1/forecast/submissions/, adjustments/, rollup/, trend/
and commit-reliability/. Bad input answers 400/403/404 with nothing written; the reads answer what the selectors
compute (tests/forecasting/test_forecast_call.py checks those numbers against plain Python)."""

from decimal import Decimal

import pytest

from accounts.models import AuditEntry
from forecasting.models import ForecastAdjustment, ForecastSubmission
from forecasting.periods import Period
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db

# The current quarter, open whenever the tests run.
QUARTER = Period.current("quarter")
BODY = {"period": QUARTER.key, "category": "commit", "amount": "5000.00", "note": "Two deals signed this week"}


def test_a_rep_submits_lists_and_retrieves_their_number(org):
    client = client_for(org.rep)
    created = client.post("/api/v1/forecast/submissions/", BODY, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["user"] == org.rep.pk and body["submitted_by"] == org.rep.pk and body["team"] is None
    assert body["period"] == QUARTER.key and body["amount"] == "5000.00" and "ETag" in created.headers
    again = client.post("/api/v1/forecast/submissions/", BODY | {"amount": "5100.00"}, format="json")
    assert again.status_code == 201
    listed = client.get(f"/api/v1/forecast/submissions/?period={QUARTER.key}&category=commit").json()["results"]
    assert [row["amount"] for row in listed] == ["5100.00", "5000.00"]  # newest first, both kept
    assert client.get(f"/api/v1/forecast/submissions/{body['id']}/").json() == body


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_a_submission_is_never_changed_or_removed(org, method):
    client = client_for(org.rep)
    created = client.post("/api/v1/forecast/submissions/", BODY, format="json").json()
    response = getattr(client, method)(f"/api/v1/forecast/submissions/{created['id']}/", {"amount": "1"}, format="json")
    assert response.status_code == 405
    adjustment = client_for(org.manager).post(
        "/api/v1/forecast/adjustments/", BODY | {"user": org.rep.pk}, format="json"
    )
    assert adjustment.status_code == 201, adjustment.content
    response = getattr(client_for(org.manager), method)(
        f"/api/v1/forecast/adjustments/{adjustment.json()['id']}/", {"amount": "1"}, format="json"
    )
    assert response.status_code == 405
    assert ForecastSubmission.objects.get().amount == Decimal("5000.00")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "-1.00"}, "amount"),
        ({"category": "pipeline"}, "category"),
        ({"period": QUARTER.previous().previous().key}, "period"),  # ended half a year ago: locked
        ({"period": "2026"}, "period"),
        ({"period": "2026-13"}, "period"),
        ({"team": 10**9}, "team"),
    ],
)
def test_bad_submissions_answer_400_and_write_nothing(org, change, field):
    response = client_for(org.rep).post("/api/v1/forecast/submissions/", BODY | change, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not ForecastSubmission.objects.exists()
    assert not AuditEntry.objects.filter(content_type__model="forecastsubmission").exists()


def test_submitting_for_someone_else_is_refused(org):
    for body, expected in (
        (BODY | {"user": org.teammate.pk}, 403),  # another rep
        (BODY | {"team": org.team.pk}, 403),  # a rep for the team
    ):
        response = client_for(org.rep).post("/api/v1/forecast/submissions/", body, format="json")
        assert response.status_code == expected, response.content
    response = client_for(org.other_manager).post(
        "/api/v1/forecast/submissions/", BODY | {"team": org.team.pk}, format="json"
    )
    assert response.status_code == 403
    assert not ForecastSubmission.objects.exists()
    response = client_for(org.manager).post(
        "/api/v1/forecast/submissions/", BODY | {"team": org.team.pk}, format="json"
    )
    assert response.status_code == 201 and response.json()["team"] == org.team.pk


def test_adjustments_answer_by_who_may_adjust_whom(settings, org):
    settings.REP_VISIBILITY = "team"
    cases = [
        (org.other_manager, {"user": org.rep.pk}, 404),  # another team's member: not visible
        (org.rep, {"user": org.other_rep.pk}, 404),
        (org.teammate, {"user": org.rep.pk}, 403),  # seen, but a rep adjusts nobody
        (org.manager, {"team": org.team.pk}, 403),  # a team's number: admins only
        (org.manager, {"user": org.rep.pk, "note": ""}, 400),
        (org.manager, {"user": org.rep.pk, "amount": "-3"}, 400),
        (org.manager, {}, 400),  # nobody named
        (org.admin, {"user": 10**9}, 404),
    ]
    for user, change, expected in cases:
        response = client_for(user).post("/api/v1/forecast/adjustments/", BODY | change, format="json")
        assert response.status_code == expected, (user, change, response.content)
    assert not ForecastAdjustment.objects.exists()
    ok = client_for(org.manager).post("/api/v1/forecast/adjustments/", BODY | {"user": org.rep.pk}, format="json")
    assert ok.status_code == 201 and ok.json()["adjusted_by"] == org.manager.pk
    ok = client_for(org.admin).post("/api/v1/forecast/adjustments/", BODY | {"team": org.team.pk}, format="json")
    assert ok.status_code == 201 and ok.json()["team"] == org.team.pk


def test_the_rollup_shows_submitted_adjusted_and_the_team_total(org):
    client_for(org.rep).post("/api/v1/forecast/submissions/", BODY, format="json")
    client_for(org.teammate).post("/api/v1/forecast/submissions/", BODY | {"amount": "700.00"}, format="json")
    before = client_for(org.manager).get(f"/api/v1/forecast/rollup/?period={QUARTER.key}&category=commit")
    assert before.status_code == 200, before.content
    (east,) = before.json()["teams"]
    assert east["value"] == "5700.00" and east["team"] == org.team.pk
    client_for(org.manager).post(
        "/api/v1/forecast/adjustments/", BODY | {"user": org.rep.pk, "amount": "4000.00"}, format="json"
    )
    after = client_for(org.manager).get(f"/api/v1/forecast/rollup/?period={QUARTER.key}").json()
    (east,) = after["teams"]
    rep = next(row for row in east["members"] if row["user"] == org.rep.pk)
    assert rep["submitted"]["amount"] == "5000.00" and rep["adjusted"]["amount"] == "4000.00"
    assert rep["adjusted"]["note"] == BODY["note"] and rep["value"] == "4000.00"
    assert east["value"] == "4700.00" and after["value"] == "4700.00" and after["company"] is False
    mine = client_for(org.rep).get("/api/v1/forecast/rollup/").json()
    assert [row["user"] for team in mine["teams"] for row in team["members"]] == [org.rep.pk]


def test_the_trend_and_commit_reliability_answer(org):
    client_for(org.rep).post("/api/v1/forecast/submissions/", BODY, format="json")
    trend = client_for(org.rep).get(f"/api/v1/forecast/trend/?period={QUARTER.key}")
    assert trend.status_code == 200, trend.content
    weeks = trend.json()["weeks"]
    assert weeks and weeks[-1]["submitted"] == "5000.00"  # the current week's value so far
    assert set(weeks[-1]) == {"lock", "submitted", "adjusted", "computed_commit", "computed_best_case", "won", "quota"}
    assert client_for(org.rep).get("/api/v1/forecast/trend/?team=999999").status_code == 400
    reliability = client_for(org.manager).get("/api/v1/forecast/commit-reliability/?periods=2")
    assert reliability.status_code == 200 and reliability.json() == []


@pytest.mark.parametrize(
    "query",
    ["period=2026", "period=all", "period=x", "category=pipeline", "at=yesterday", "period=2026-Q5"],
)
def test_bad_read_parameters_answer_400_naming_them(org, query):
    response = client_for(org.admin).get(f"/api/v1/forecast/rollup/?{query}")
    assert response.status_code == 400, response.content
    assert query.split("=")[0] in response.json()


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_the_rollup_and_trend_answer_what_their_serializers_would(org, settings, zone):
    """The two answers are shaped by hand for speed (`rollup_representation`, `trend_representation`); the DRF
    serializers stay their schema, and both must give the same JSON: amounts with two decimals, times in TIME_ZONE,
    entries nested or null."""
    from rest_framework.renderers import JSONRenderer

    from forecasting import selectors
    from forecasting.api.serializers import RollupSerializer, TrendSerializer

    settings.TIME_ZONE = zone
    client_for(org.rep).post("/api/v1/forecast/submissions/", BODY, format="json")
    client_for(org.manager).post(
        "/api/v1/forecast/adjustments/", BODY | {"user": org.rep.pk, "amount": "4000.50"}, format="json"
    )
    render = JSONRenderer().render
    rollup = client_for(org.manager).get(f"/api/v1/forecast/rollup/?period={QUARTER.key}&category=commit")
    expected = selectors.forecast_rollup(user=org.manager, period=QUARTER, category="commit", at=None)
    got, want = rollup.json(), RollupSerializer(expected).data
    assert got.pop("at") and want.pop("at")  # "now", a moment apart
    assert render(got) == render(want)
    assert any(member["adjusted"] for team in got["teams"] for member in team["members"])
    trend = client_for(org.manager).get(f"/api/v1/forecast/trend/?period={QUARTER.key}").json()
    weeks = selectors.forecast_trend(user=org.manager, period=QUARTER, category="commit")
    assert render(trend) == render(TrendSerializer({"period": QUARTER.key, "category": "commit", "weeks": weeks}).data)
