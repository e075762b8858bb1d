"""The forecast dashboard in a real browser (Debian's Chromium through Playwright, against the live server): the
charts draw, and "Recompute now" goes through a REAL Celery worker process to fresher numbers on the page."""

import os
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from forecasting.services import recompute_history_metrics, recompute_metrics
from tests.forecasting.helpers import deal_with_history
from tests.forecasting.test_tasks import start_worker  # noqa: F401 (a fixture: a real worker on the test database)
from tests.pipeline.test_browser import CHROMIUM, board_pipeline, browser, log_in, page  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]

CHART_HAS_PIXELS = """(id) => {
    const canvas = document.getElementById(id);
    if (!canvas || !window.Chart || !Chart.getChart(canvas) || !canvas.width || !canvas.height) return false;
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
    return false;
}"""


@pytest.fixture
def team_history(org, board_pipeline, lost_reason):  # noqa: F811
    """A few won, lost and open deals of the manager's team, and a recompute ten minutes ago."""
    today = timezone.localdate()
    for owner, amount in [(org.rep, "12000"), (org.teammate, "8000")]:
        deal_with_history(
            owner=owner,
            pipeline=board_pipeline,
            amount=Decimal(amount),
            path=[("Prospecting", "2026-06-01"), ("Discovery", "2026-06-20"), ("Won", "2026-07-15")],
        )
    deal_with_history(
        owner=org.rep,
        pipeline=board_pipeline,
        lost_reason=lost_reason,
        path=[("Prospecting", "2026-06-01"), ("Lost", "2026-06-10")],
    )
    deal_with_history(
        owner=org.teammate,
        pipeline=board_pipeline,
        title="Open expansion",
        expected_close_date=today,
        path=[("Prospecting", "2026-06-01"), ("Proposal", "2026-06-15")],
    )
    run = recompute_metrics(as_of=timezone.now() - timedelta(minutes=10))
    recompute_history_metrics(as_of=run.computed_at)  # the reliability chart: calibration, a task of its own
    return run


def test_a_manager_sees_the_charts_and_recomputes_through_a_worker(page, org, team_history, start_worker):  # noqa: F811
    worker = start_worker()
    log_in(page, "manager")
    page.goto("/dashboard/")

    assert "East" in page.locator("h1").inner_text()
    for chart in ("chart-forecast", "chart-funnel", "chart-stage-time", "chart-reliability"):
        page.wait_for_function(CHART_HAS_PIXELS, arg=chart)
    freshness = page.locator("#freshness time")
    before = freshness.get_attribute("datetime")
    assert "10\xa0minutes ago" in freshness.inner_text()
    # Beside the learned numbers: the window they were learned over, and each stage's won / lost counts.
    assert "closed in the last 365 days" in page.locator("#learning-note").inner_text()
    assert page.locator("[data-metric=learned_counts]").first.inner_text() == "2\u2009w / 1\u2009l"

    page.click("#recompute-now")
    page.wait_for_selector("#recompute-status .recompute-progress")  # queued, then polled every second
    # The status partial answers HX-Refresh once the new run is complete: the page reloads with its numbers.
    try:
        page.wait_for_function(
            "(before) => { const t = document.querySelector('#freshness time');"
            " return !!t && t.getAttribute('datetime') !== before; }",
            arg=before,
            timeout=90_000,
        )
    except Exception as error:
        raise AssertionError(f"no fresher run appeared\n--- worker log ---\n{worker.log()}") from error

    after = page.locator("#freshness time").get_attribute("datetime")
    assert after > before
    assert page.locator("#freshness time").inner_text() == "just now"
    page.wait_for_function(CHART_HAS_PIXELS, arg="chart-forecast")
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        page.screenshot(path=os.environ["DASHBOARD_SCREENSHOT"], full_page=True)
