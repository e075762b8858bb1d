"""forecasting.api.params through the API: periods (one, or a range of periods), groups and filters, and a 400
naming each bad query parameter."""

import pytest

from tests.forecasting.api.conftest import session_client

pytestmark = pytest.mark.django_db


def test_quarter_year_and_date_range_periods(org, closings):
    client = session_client(org.admin)
    assert (
        client.get("/api/v1/metrics/win-rates/", {"period": "2026-Q4"}).json()["results"][0]["period_kind"] == "quarter"
    )
    assert client.get("/api/v1/metrics/win-rates/", {"period": "2026"}).json()["results"][0]["won"] == 1
    ranged = client.get("/api/v1/metrics/win-rates/", {"start": "2026-09-01", "end": "2026-12-01"}).json()["results"]
    shape = [(row["period_kind"], row["period_start"], row["period_end"], row["won"], row["lost"]) for row in ranged]
    assert shape == [("range", "2026-09-01", "2026-12-01", 1, 1)]
    months = {"start": "2026-09-01", "end": "2026-12-01", "period_kind": "month"}
    assert [row["period_start"] for row in client.get("/api/v1/metrics/win-rates/", months).json()["results"]] == [
        "2026-10-01"
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"period": "2026-13"},
        {"period": "26-11"},
        {"start": "2026-01-01"},
        {"start": "2026-02-01", "end": "2026-01-01"},
        {"period": "2026", "start": "2026-01-01", "end": "2026-02-01"},
        {"group": "planet"},
        {"owner": "x"},
    ],
)
def test_bad_query_parameters_are_a_400(org, closings, params):
    assert session_client(org.admin).get("/api/v1/metrics/win-rates/", params).status_code == 400


def test_a_bad_period_is_a_400_that_says_why(org, closings):
    client = session_client(org.admin)
    answer = client.get("/api/v1/metrics/win-rates/", {"period": "2026-13"})
    assert answer.status_code == 400 and answer.json() == {"period": ["The month must be 01 to 12."]}
    answer = client.get("/api/v1/metrics/win-rates/", {"period": "9999-12"})  # its end would be in the year 10000
    assert answer.status_code == 400 and answer.json() == {"period": ["The period must end before the year 10000."]}


@pytest.mark.parametrize("url", ["/api/v1/metrics/stage-times/", "/api/v1/metrics/stale-deals/"])
def test_metrics_that_are_not_per_period_refuse_a_period(org, closings, url):
    assert session_client(org.admin).get(url, {"period": "2026-10"}).status_code == 400


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/metrics/win-rates/", {"period": "2026-13"}, "period"),
        ("/api/v1/metrics/win-rates/", {"period": "26-11"}, "period"),
        ("/api/v1/metrics/win-rates/", {"period": "0000"}, "period"),
        ("/api/v1/metrics/win-rates/", {"start": "2026-01-01"}, "end"),
        ("/api/v1/metrics/win-rates/", {"end": "2026-01-01"}, "start"),
        ("/api/v1/metrics/win-rates/", {"start": "2026-02-01", "end": "2026-01-01"}, "end"),
        ("/api/v1/metrics/win-rates/", {"period": "2026", "start": "2026-01-01", "end": "2026-02-01"}, "period"),
        ("/api/v1/metrics/win-rates/", {"period_kind": "quarter"}, "period_kind"),
        ("/api/v1/metrics/win-rates/", {"group": "planet"}, "group"),
        ("/api/v1/metrics/win-rates/", {"owner": "x"}, "owner"),
        ("/api/v1/metrics/win-rates/", {"team": "0"}, "team"),
        ("/api/v1/metrics/win-rates/", {"source": "a\x00b"}, "source"),
        ("/api/v1/metrics/funnel/", {"group": "pipeline"}, "group"),
        ("/api/v1/metrics/leads/", {"group": "pipeline"}, "group"),
        ("/api/v1/metrics/stage-times/", {"period": "2026-10"}, "period"),
        ("/api/v1/metrics/stale-deals/", {"start": "2026-10-01"}, "start"),
        ("/api/v1/forecast/", {"start": "9999-12-31", "end": "not a date"}, "end"),
    ],
)
def test_a_bad_query_parameter_is_a_400_naming_it(admin, path, params, field):
    response = admin.get(path, params)
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
