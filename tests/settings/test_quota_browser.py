"""The Quotas settings page in a real browser (Debian's Chromium through Playwright): a manager finds it from the
settings tabs, sets a quota for a member, sees a per-field error, filters the list and deletes the quota."""

import os
from decimal import Decimal

import pytest

from forecasting.models import Quota
from tests.pipeline.test_browser import CHROMIUM, browser, log_in, page  # noqa: F401 (fixtures)
from tests.settings.test_browser import screenshot

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]


def test_a_manager_sets_filters_and_deletes_a_quota(page, org):  # noqa: F811
    log_in(page, "manager")
    page.goto("/settings/tokens/")
    page.click(".settings-tabs >> text=Quotas")
    page.wait_for_url("**/settings/quotas/")
    assert "No quotas" in page.locator("#quotas").inner_text()
    # The manager may set quotas for their team and its members, not for themselves or the other team.
    options = page.locator("#id_user option").all_inner_texts()
    assert "rep" in options and "manager" not in options and "other_rep" not in options
    assert page.locator("#id_team option").all_inner_texts()[1:] == ["East"]

    page.select_option("#id_user", label="rep")
    page.fill("#id_period_start", "2027-01-01")
    page.fill("#id_period_end", "2027-04-01")
    page.fill("#id_amount", "-10")
    page.click("#quota-form button[type=submit]")
    assert page.locator("#id_amount-error").is_visible()
    assert not Quota.objects.exists()

    page.fill("#id_amount", "45000")
    page.click("#quota-form button[type=submit]")
    page.wait_for_selector("#quotas tbody tr[id^=quota-]")
    created = Quota.objects.get()
    assert (created.user, created.amount) == (org.rep, Decimal("45000"))
    assert "$45,000" in page.locator(f"#quota-{created.pk}").inner_text()
    screenshot(page, "quotas.png")

    page.fill("#filter_period", "2026-Q4")
    page.click("#quota-filters button[type=submit]")
    assert "No quotas match" in page.locator("#quotas").inner_text()
    page.fill("#filter_period", "2027-Q1")
    page.click("#quota-filters button[type=submit]")
    assert page.locator(f"#quota-{created.pk}").is_visible()

    page.click(f"#quota-{created.pk} button.danger")
    page.wait_for_selector("#quotas >> text=No quotas")
    assert not Quota.objects.exists()
