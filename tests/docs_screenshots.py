"""The README's screenshots (docs/screenshots/board.png, organization.png, deals.png, dashboard.png and forecast.png),
taken from
demo data.

Not part of `make test` (the file name does not start with test_): run `make screenshots`, which seeds the test
database with `seed_demo`, recomputes the metrics, logs in as grace (manager of East) in Debian's Chromium at
1440×900 and saves the board, the busiest organization's page, the deal table, the dashboard of this quarter and its
forecast call (with a few of East's reps' numbers stated last week and this week, and one adjusted). Commit the PNGs
when the pages change visibly.
"""

import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db.models import Count, Q
from django.utils import timezone

from accounts.models import User
from forecasting.periods import Period
from forecasting.selectors import forecast_rollup, period_instants, week_lock
from forecasting.services import adjust_forecast, recompute_metrics, submit_forecast
from pipeline.selectors import visible_deals, visible_organizations
from tests.pipeline.test_browser import CHROMIUM, browser, page  # noqa: F401 (fixtures)

OUT = Path(os.environ.get("SCREENSHOTS_DIR") or Path(settings.BASE_DIR) / "docs" / "screenshots")
MAX_BYTES = 400_000

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium")


def test_take_the_readme_screenshots(page, transactional_db):  # noqa: F811
    call_command("seed_demo", deals=int(os.environ.get("SCREENSHOT_DEALS", "2000")), verbosity=0)
    recompute_metrics()
    page.goto("/login/")
    page.fill("#id_username", "grace")
    page.fill("#id_password", "pipeline-demo")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    OUT.mkdir(parents=True, exist_ok=True)

    page.goto("/board/")
    page.wait_for_selector("#board .column")
    page.screenshot(path=str(OUT / "board.png"))

    # The organization with the most deals grace sees: its totals, deals, contacts and timeline.
    grace = User.objects.get(username="grace")
    busiest = (
        visible_organizations(grace)
        .annotate(deal_count=Count("deals", filter=Q(deals__in=visible_deals(grace))))
        .order_by("-deal_count", "name")
        .first()
    )
    page.goto(f"/organizations/{busiest.pk}/")
    page.screenshot(path=str(OUT / "organization.png"))

    page.goto(
        "/deals/?status=open&sort=-amount&col=stage&col=owner&col=organization&col=amount&col=expected_close_date"
    )
    page.screenshot(path=str(OUT / "deals.png"))

    page.goto("/dashboard/?kind=quarter")  # the demo quotas are quarterly
    page.wait_for_function("() => !!(window.Chart && Chart.getChart(document.getElementById('chart-forecast')))")
    page.wait_for_timeout(800)  # the charts' 300 ms animation
    page.screenshot(path=str(OUT / "dashboard.png"))

    state_a_forecast_call(grace)
    page.goto("/forecast/")
    page.wait_for_function("() => !!(window.Chart && Chart.getChart(document.getElementById('chart-trend')))")
    page.wait_for_timeout(800)
    page.screenshot(path=str(OUT / "forecast.png"))

    for name in ("board.png", "organization.png", "deals.png", "dashboard.png", "forecast.png"):
        assert (OUT / name).stat().st_size < MAX_BYTES, f"{name} is over {MAX_BYTES} bytes"


def state_a_forecast_call(manager: User) -> None:
    """This quarter's commit of three of `manager`'s reps: last week a round number near what the CRM computes, this
    week a little more; the manager adjusts the first one's down with a note."""
    quarter = Period.current("quarter")
    # Before last week's lock (inside the quarter): it is last week's number on the trend.
    last_week = max(week_lock(timezone.now()) - timedelta(days=7, hours=2), period_instants(quarter)[0])
    rollup = forecast_rollup(user=manager, period=quarter, category="commit")
    members = [member for team in rollup.teams for member in team.members]
    members = [member for member in members if member.user_id != manager.pk][:3]
    for number, member in enumerate(members):
        rep = User.objects.get(pk=member.user_id)
        stated = (member.computed + 50_000 * (number + 1)).quantize(Decimal("1000"))
        submit_forecast(user=rep, period=quarter, category="commit", amount=stated, now=last_week)
        submit_forecast(user=rep, period=quarter, category="commit", amount=stated + 20_000, note="Two renewals in")
    if members:
        first = User.objects.get(pk=members[0].user_id)
        adjust_forecast(user=manager, member=first, period=quarter, category="commit",
                        amount=members[0].computed + 40_000, note="Keep the renewals to best case")  # fmt: skip
