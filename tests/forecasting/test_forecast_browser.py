"""The forecast call page in a real browser (Debian's Chromium through Playwright, against the live server): a rep
submits their number inline, their manager adjusts it with a note, the team total changes, and the weekly trend
shows last week's call beside this week's, under the app's Content-Security-Policy."""

import os
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from forecasting.periods import Period
from forecasting.services import recompute_metrics, submit_forecast
from tests.factories import make_qualified_deal, stage
from tests.forecasting.test_dashboard_browser import CHART_HAS_PIXELS
from tests.pipeline.test_browser import (  # noqa: F401 (fixtures)
    CHROMIUM,
    board_pipeline,
    browser,
    csp_violations,
    log_in,
    page,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]

TREND = """() => {
    const chart = Chart.getChart(document.getElementById("chart-trend"));
    return {labels: chart.data.labels, submitted: chart.data.datasets[0].data, adjusted: chart.data.datasets[1].data};
}"""

# What sticks out of a 768 px window (the failure message); the top bar's links scroll inside it.
WIDER_THAN_768 = """() => [...document.querySelectorAll("main *")]
    .filter((e) => e.getBoundingClientRect().right > 768)
    .slice(0, 8).map((e) => `${e.tagName}.${e.className}#${e.id} ${Math.round(e.getBoundingClientRect().right)}`)"""


def team_total(tab, team) -> str:
    return tab.locator(f"#team-total-{team.pk} [data-col=value]").inner_text()


def test_a_rep_submits_the_manager_adjusts_and_the_total_and_the_trend_follow(
    page,  # noqa: F811
    org,
    board_pipeline,  # noqa: F811
    settings,
):
    # This week's call locked at midnight yesterday: last week's number was stated the evening before.
    zone = ZoneInfo(django_settings.TIME_ZONE)
    yesterday = timezone.localdate() - timedelta(days=1)
    settings.FORECAST_LOCK_WEEKDAY = yesterday.weekday()
    settings.FORECAST_LOCK_TIME = "00:00"
    last_lock = datetime.combine(yesterday, time.min, zone)
    quarter = Period.current("quarter")
    if last_lock - timedelta(hours=1) < datetime.combine(quarter.start, time.min, zone):
        pytest.skip("the quarter began yesterday: it has no earlier week")
    for owner, amount in ((org.rep, "4000"), (org.teammate, "3000")):
        make_qualified_deal(
            owner=owner,
            pipeline=board_pipeline,
            stage=stage(board_pipeline, "Negotiation"),
            amount=Decimal(amount),
            expected_close_date=quarter.end - timedelta(days=1),
        )
    recompute_metrics()
    submit_forecast(user=org.rep, period=quarter, category="commit", amount="5000", now=last_lock - timedelta(hours=1))
    violations = csp_violations(page)

    log_in(page, "rep")
    page.goto("/forecast/")
    assert page.locator("tr.call-member").count() == 1  # their own row only
    form = page.locator(f"#submit-{org.rep.pk}")
    form.locator("input[name=amount]").fill("7000")
    form.locator("input[name=note]").fill("Acme signs in week 2")
    form.locator("button[type=submit]").click()
    submitted = page.locator(f"#member-{org.rep.pk} [data-col=submitted]")
    submitted.filter(has_text="$7,000").wait_for()
    assert "Acme signs in week 2" in submitted.inner_text()

    page.context.clear_cookies()
    log_in(page, "manager")
    page.goto("/forecast/")
    assert page.locator("tr.call-member").count() == 3  # the rep, the teammate and the manager
    assert team_total(page, org.team) == "$10,000"  # the rep's 7,000 and the teammate's computed 3,000
    row = page.locator(f"#member-{org.rep.pk}")
    row.locator("summary", has_text="Adjust").click()
    adjust = page.locator(f"#adjust-{org.rep.pk}")
    adjust.locator("input[name=amount]").fill("6000")
    adjust.locator("input[name=note]").fill("Legal review slips a week")
    adjust.locator("button[type=submit]").click()
    page.locator(f"#team-total-{org.team.pk} [data-col=value]", has_text="$9,000").wait_for()
    assert "Legal review slips a week" in page.locator(f"#member-{org.rep.pk} [data-col=adjusted]").inner_text()
    assert "$7,000" in page.locator(f"#member-{org.rep.pk} [data-col=submitted]").inner_text()  # kept beside it

    # The trend, redrawn in the swapped block: last week's call (the rep's 5,000; the deals came later) and this
    # week's (7,000 + 3,000 submitted, 6,000 + 3,000 adjusted).
    page.wait_for_function(CHART_HAS_PIXELS, arg="chart-trend")
    trend = page.evaluate(TREND)
    assert trend["submitted"][-2:] == [5000, 10000]
    assert trend["adjusted"][-2:] == [5000, 9000]
    assert trend["labels"][-2] == f"{yesterday:%b} {yesterday.day}"
    weeks = page.locator("#trend-table tbody tr")
    assert weeks.count() == len(trend["labels"])
    assert "$5,000" in weeks.nth(weeks.count() - 2).inner_text()
    assert violations == []
    page.set_viewport_size({"width": 768, "height": 900})
    page.wait_for_timeout(500)  # Chart.js resizes its canvas after the window's resize event
    wide = page.evaluate(WIDER_THAN_768)
    assert page.evaluate("document.documentElement.scrollWidth") <= 768, wide  # the wide tables scroll in their card
    if os.environ.get("FORECAST_SCREENSHOT"):
        page.screenshot(path=os.environ["FORECAST_SCREENSHOT"], full_page=True)
