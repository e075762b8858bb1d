"""The README's screenshots (docs/screenshots/: board, deal, organization, deals, dashboard and forecast, each at
1440×900 and, as `phone-*.png`, at 390×844 with touch), taken from demo data.

Not part of `make test` (the file name does not start with test_): run `make screenshots`, which seeds the test
database with `seed_demo`, recomputes the metrics, logs in as grace (manager of East) in Debian's Chromium and saves
the board, the biggest open deal's page, the busiest organization's page, the deal table, the dashboard of this
quarter and its forecast call (with a few of East's reps' numbers stated last week and this week, and one adjusted).
Commit the PNGs when the pages change visibly.
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
from forecasting.services import adjust_forecast, recompute_history_metrics, recompute_metrics, submit_forecast
from pipeline.selectors import visible_deals, visible_organizations
from tests.pipeline.test_browser import CHROMIUM, browser, page  # noqa: F401 (fixtures)

OUT = Path(os.environ.get("SCREENSHOTS_DIR") or Path(settings.BASE_DIR) / "docs" / "screenshots")
MAX_BYTES = 400_000

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium")


def test_take_the_readme_screenshots(page, live_server, transactional_db):  # noqa: F811
    call_command("seed_demo", deals=int(os.environ.get("SCREENSHOT_DEALS", "2000")), verbosity=0)
    recompute_metrics()
    recompute_history_metrics()
    page.goto("/login/")
    page.fill("#id_username", "grace")
    page.fill("#id_password", "pipeline-demo")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)

    grace = User.objects.get(username="grace")
    # The organization with the most deals grace sees: its totals, deals, contacts and timeline.
    busiest = (
        visible_organizations(grace)
        .annotate(deal_count=Count("deals", filter=Q(deals__in=visible_deals(grace))))
        .order_by("-deal_count", "name")
        .first()
    )
    biggest = visible_deals(grace).filter(status="open", amount__isnull=False).order_by("-amount", "id").first()
    state_a_forecast_call(grace)
    OUT.mkdir(parents=True, exist_ok=True)
    shoot_every_page(page, prefix="", deal=biggest, organization=busiest)

    # The same pages on a phone, in a context of its own that shares the login.
    phone = page.context.browser.new_context(
        viewport={"width": 390, "height": 844},
        base_url=live_server.url,
        has_touch=True,
        is_mobile=True,
        storage_state=page.context.storage_state(),
    )
    try:
        shoot_every_page(phone.new_page(), prefix="phone-", deal=biggest, organization=busiest)
    finally:
        phone.close()

    for name in SCREENSHOTS:
        for prefix in ("", "phone-"):
            path = OUT / f"{prefix}{name}.png"
            assert path.stat().st_size < MAX_BYTES, f"{path.name} is over {MAX_BYTES} bytes"


SCREENSHOTS = ("board", "deal", "organization", "deals", "dashboard", "forecast")


def shoot_every_page(page, *, prefix: str, deal, organization) -> None:  # noqa: F811
    """Save SCREENSHOTS of the pages as `page` (logged in) sees them, named with `prefix`."""

    def save(name: str) -> None:
        page.screenshot(path=str(OUT / f"{prefix}{name}.png"))

    page.goto("/board/")
    page.wait_for_selector("#board .column")
    save("board")
    page.goto(f"/deals/{deal.pk}/")
    save("deal")
    page.goto(f"/organizations/{organization.pk}/")
    save("organization")
    page.goto(
        "/deals/?status=open&sort=-amount&col=stage&col=owner&col=organization&col=amount&col=expected_close_date"
    )
    save("deals")
    page.goto("/dashboard/?kind=quarter")  # the demo quotas are quarterly
    page.wait_for_function("() => !!(window.Chart && Chart.getChart(document.getElementById('chart-forecast')))")
    page.wait_for_timeout(800)  # the charts' 300 ms animation
    save("dashboard")
    page.goto("/forecast/")
    page.wait_for_function("() => !!(window.Chart && Chart.getChart(document.getElementById('chart-trend')))")
    page.wait_for_timeout(800)
    save("forecast")


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
