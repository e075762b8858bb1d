"""The dashboard's waterfall in a real browser: its bars draw, a bar opens the list of its deals, and the pushed
deal's card on the board says "pushed 1×"."""

import os
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from forecasting.periods import Period
from pipeline import services
from tests.forecasting.test_dashboard_browser import CHART_HAS_PIXELS
from tests.pipeline.test_browser import CHROMIUM, board_pipeline, browser, log_in, page  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]

# The centre of the bar `index` of the waterfall chart, in page coordinates.
BAR_CENTRE = """(index) => {
    const canvas = document.getElementById("chart-waterfall");
    const bar = Chart.getChart(canvas).getDatasetMeta(0).data[index];
    const box = canvas.getBoundingClientRect();
    return {x: box.left + bar.x, y: box.top + (bar.y + bar.base) / 2};
}"""


def test_the_waterfall_bar_opens_its_deals_and_the_card_says_pushed(page, org, board_pipeline):  # noqa: F811
    month = Period.current("month")
    made = {
        title: services.create_deal(
            actor=org.admin,
            title=title,
            owner=org.rep,
            pipeline=board_pipeline,
            amount=Decimal(amount),
            expected_close_date=month.start,
            created_at=timezone.now() - timedelta(days=10),
        )
        for title, amount in (("Slipping renewal", "9000"), ("Steady expansion", "4000"))
    }
    services.update_deal(deal=made["Slipping renewal"], actor=org.admin, expected_close_date=month.end)

    log_in(page, "admin")
    page.goto("/dashboard/")
    page.wait_for_function(CHART_HAS_PIXELS, arg="chart-waterfall")
    assert page.locator("#waterfall-buckets").inner_text() == "Pushed out: 1 deal"
    # Bars: Start, Pushed out, Now. A click on the middle one lists its deal.
    centre = page.evaluate(BAR_CENTRE, 1)
    page.mouse.click(centre["x"], centre["y"])
    rows = page.locator("#waterfall-deal-list tbody tr")
    rows.first.wait_for()
    assert rows.count() == 1
    assert "Slipping renewal" in rows.first.inner_text()
    assert "9000.00 → 9000.00" in rows.first.inner_text()
    if os.environ.get("WATERFALL_SCREENSHOT"):
        page.locator("#waterfall").screenshot(path=os.environ["WATERFALL_SCREENSHOT"])

    page.goto("/board/")
    card = page.locator(f"#deal-{made['Slipping renewal'].pk}")
    assert card.locator(".badge.pushed").inner_text() == "pushed 1×"
    assert page.locator(f"#deal-{made['Steady expansion'].pk} .badge.pushed").count() == 0
