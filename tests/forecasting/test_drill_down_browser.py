"""The drill-down in a real browser: clicking the Won KPI, and a bar of the funnel chart, opens the deal table of
exactly those deals, with the totals the dashboard showed, and no Content-Security-Policy violation."""

import os
import re
from decimal import Decimal

import pytest

from pipeline.models import Deal, StageKind
from tests.forecasting.test_drill_down import PERIOD, dataset, expected  # noqa: F401 (a fixture)
from tests.pipeline.test_browser import CHROMIUM, browser, csp_violations, log_in, page  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]

BAR_CENTRE = """([id, index]) => {
    const bar = Chart.getChart(document.getElementById(id)).getDatasetMeta(0).data[index];
    return {x: bar.x - (bar.width || 0) / 4, y: bar.y};
}"""


def shown_ids(tab) -> set[int]:
    return {int(pk) for pk in tab.locator("tr[data-deal-id]").evaluate_all("rows => rows.map(r => r.dataset.dealId)")}


def test_a_manager_clicks_the_won_kpi_and_a_funnel_bar_and_gets_their_deals(page, org, pipeline, dataset):  # noqa: F811
    violations = csp_violations(page)
    log_in(page, "manager")
    page.goto(f"/dashboard/?period={PERIOD}&pipeline={pipeline.pk}")
    won_count = int(page.locator("[data-drill=outcomes_won]").inner_text())

    page.click("a[data-drill=won]")
    page.wait_for_url(re.compile(r"/deals/\?"))
    want = expected("won", org.manager, org, pipeline)
    assert shown_ids(page) == want and len(want) == won_count
    total = page.locator("#deal-total")
    assert int(total.get_attribute("data-count")) == won_count
    assert Decimal(total.get_attribute("data-amount")) == sum(d.amount for d in Deal.objects.filter(pk__in=want))

    page.go_back()
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('chart-funnel'))")
    page.wait_for_timeout(400)  # the bars' entry animation
    point = page.evaluate(BAR_CENTRE, ["chart-funnel", 0])
    page.locator("#chart-funnel").click(position=point)
    page.wait_for_url(re.compile(r"reached_stage="))
    first = pipeline.stages.filter(kind=StageKind.OPEN).order_by("order").first()
    assert shown_ids(page) == expected("funnel", org.manager, org, pipeline, stage=first)
    assert violations == []
