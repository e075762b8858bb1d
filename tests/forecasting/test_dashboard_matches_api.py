"""End to end: the dashboard a manager sees in a real browser shows the SAME numbers as the API.

A small hand-built history (won, lost and open deals of one team in July 2026, a team quota, one recompute), then:
the key figures on the page (their `data-metric` elements) and the data Chart.js drew (`Chart.getChart(canvas)`)
are compared with what /api/v1/forecast/ and /api/v1/metrics/win-rates/ answer the same manager for the same period
and team. The run also leaves screenshots of the board and the dashboard in build/screenshots/ (git-ignored).
"""

import os
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from forecasting.services import create_quota, recompute_metrics
from forecasting.templatetags.forecast import amount, amount_short, percent
from tests.forecasting.helpers import deal_with_history
from tests.pipeline.test_browser import CHROMIUM, board_pipeline, browser, log_in, page  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]

SCREENSHOTS = Path(settings.BASE_DIR) / "build" / "screenshots"
PERIOD = "2026-07"

CHART_DATA = """(id) => {
    const canvas = document.getElementById(id);
    const chart = canvas && window.Chart && Chart.getChart(canvas);
    if (!chart) return null;
    const datasets = chart.data.datasets.map((d) => ({ label: d.label || null, data: d.data }));
    return { labels: chart.data.labels, datasets: datasets };
}"""


@pytest.fixture
def july(org, board_pipeline, lost_reason):  # noqa: F811
    """East's July 2026: two deals won, one lost, two open ones expected to close in July; a quota of 50,000."""
    for owner, amount_ in [(org.rep, "12000"), (org.teammate, "8000")]:
        deal_with_history(
            owner=owner,
            pipeline=board_pipeline,
            amount=Decimal(amount_),
            path=[("Prospecting", "2026-06-01"), ("Discovery", "2026-06-20"), ("Won", "2026-07-15")],
        )
    deal_with_history(
        owner=org.rep,
        pipeline=board_pipeline,
        lost_reason=lost_reason,
        path=[("Prospecting", "2026-06-01"), ("Lost", "2026-07-10")],
    )
    deal_with_history(
        owner=org.teammate,
        pipeline=board_pipeline,
        amount=Decimal("20000"),
        expected_close_date=date(2026, 7, 28),
        path=[("Prospecting", "2026-06-01"), ("Negotiation", "2026-06-15")],
    )
    deal_with_history(
        owner=org.rep,
        pipeline=board_pipeline,
        amount=Decimal("5000"),
        expected_close_date=date(2026, 7, 20),
        path=[("Prospecting", "2026-06-05"), ("Proposal", "2026-06-25")],
    )
    create_quota(
        actor=org.manager,
        team=org.team,
        period_start=date(2026, 7, 1),
        period_end=date(2026, 8, 1),
        amount=Decimal("50000"),
    )
    return recompute_metrics(as_of=timezone.now() - timedelta(minutes=5))


def _api(user, path: str, **params) -> dict:
    client = APIClient()
    client.force_login(user)
    response = client.get(path, params)
    assert response.status_code == 200, response.content
    return response.json()


def _float(value) -> float:
    return float(value) if value is not None else 0.0


def test_the_dashboard_shows_the_numbers_of_the_api(page, org, board_pipeline, july):  # noqa: F811
    query = {"period": PERIOD, "group": "team", "team": org.team.pk}
    forecast_body = _api(org.manager, "/api/v1/forecast/", **query)
    win_body = _api(org.manager, "/api/v1/metrics/win-rates/", **query)
    assert len(forecast_body["results"]) == 1 and len(win_body["results"]) == 1
    forecast, outcomes = forecast_body["results"][0], win_body["results"][0]
    # The dataset is what we think it is: otherwise a page and an API that agree on zeros would pass.
    assert (outcomes["won"], outcomes["lost"]) == (2, 1)
    assert Decimal(forecast["won_amount"]) == Decimal("20000")
    assert Decimal(forecast["pipeline"]) == Decimal("25000")

    log_in(page, "manager")
    page.goto(f"/dashboard/?period={PERIOD}&team={org.team.pk}")
    assert "East" in page.locator("h1").inner_text()
    assert "July 2026" in page.locator(".period-label").inner_text()

    def shown(metric: str) -> str:
        return page.locator(f'[data-metric="{metric}"]').inner_text().strip()

    assert shown("weighted_configured") == amount_short(forecast["weighted_configured"])
    assert shown("weighted_learned") == amount_short(forecast["weighted_learned"])
    assert shown("won_amount") == amount_short(forecast["won_amount"])
    assert shown("won_count") == str(forecast["won_count"])
    for name in ("commit", "best_case", "pipeline"):
        assert shown(name) == amount(forecast[name]), name
    assert shown("weighted_configured_full") == amount(forecast["weighted_configured"])
    assert shown("weighted_learned_full") == amount(forecast["weighted_learned"])
    assert shown("win_rate") == percent(outcomes["win_rate"]) == "67%"
    assert shown("outcomes_won") == str(outcomes["won"])
    assert shown("outcomes_lost") == str(outcomes["lost"])
    assert shown("avg_won_amount") == amount_short(outcomes["avg_won_amount"])
    attainment = Decimal(forecast["won_amount"]) / Decimal("50000")
    assert shown("attainment") == percent(attainment) == "40%"

    page.wait_for_function(
        "(id) => !!(window.Chart && Chart.getChart(document.getElementById(id)))", arg="chart-forecast"
    )
    chart = page.evaluate(CHART_DATA, "chart-forecast")
    bars, quota_line = chart["datasets"]
    fields = ("won_amount", "commit", "best_case", "pipeline", "weighted_configured", "weighted_learned")
    assert bars["data"] == pytest.approx([_float(forecast[name]) for name in fields])
    assert quota_line["label"] == "Quota"
    assert quota_line["data"] == [50000.0] * len(fields)
    assert chart["labels"][:4] == ["Won", "Commit", "Best case", "Pipeline"]

    funnel = page.evaluate(CHART_DATA, "chart-funnel")
    funnel_rows = _api(org.manager, "/api/v1/metrics/funnel/", group="team", team=org.team.pk)["results"]
    assert funnel["datasets"][0]["data"] == [row["reached"] for row in sorted(funnel_rows, key=lambda r: r["order"])]

    stage_time = page.evaluate(CHART_DATA, "chart-stage-time")
    stays = _api(org.manager, "/api/v1/metrics/stage-times/", group="team", team=org.team.pk)["results"]
    median = {row["stage_id"]: row["days_median"] for row in stays}
    stage_ids = {name: pk for pk, name in board_pipeline.stages.values_list("pk", "name")}
    expected = [round(median.get(stage_ids[name]) or 0, 1) for name in stage_time["labels"]]
    assert stage_time["datasets"][0]["data"] == pytest.approx(expected)

    # Win rate by rep: the table's rows against the API's per-owner rows of the same period and team.
    # (Per-owner rows carry no team: the manager's visibility limits them to East's people.)
    # The API also answers the manager's own row, empty (nothing closed: null rate); the table lists who closed.
    per_owner = _api(org.manager, "/api/v1/metrics/win-rates/", period=PERIOD, group="owner")["results"]
    names = {org.rep.pk: str(org.rep), org.teammate.pk: str(org.teammate)}
    empty = [(row["owner_id"], row["win_rate"]) for row in per_owner if not row["won"] + row["lost"]]
    assert empty == [(org.manager.pk, None)]
    per_owner = [row for row in per_owner if row["won"] + row["lost"]]
    assert {row["owner_id"] for row in per_owner} == set(names)
    for row in per_owner:
        cells = page.locator("#reps tbody tr", has_text=names[row["owner_id"]]).locator("td").all_inner_texts()
        assert cells[1] == f"{row['won']} / {row['won'] + row['lost']}"
        assert cells[2].strip() == percent(row["win_rate"])
    assert page.locator("#reps tbody tr").count() == 2

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
    page.goto("/board/")
    page.wait_for_selector("#board .column")
    page.screenshot(path=str(SCREENSHOTS / "board.png"), full_page=True)
    assert (SCREENSHOTS / "dashboard.png").stat().st_size > 0
    assert (SCREENSHOTS / "board.png").stat().st_size > 0
