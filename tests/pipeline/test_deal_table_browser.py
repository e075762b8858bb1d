"""The deal table (/deals/) in a real browser: sorting by a column, choosing columns, saving a view and opening it
again, and a bulk move in which one deal is refused by name while the other moves; the page fits 768 px."""

import os
from decimal import Decimal

import pytest

from pipeline.models import Deal, SavedDealView
from tests.factories import make_deal, make_qualified_deal, stage
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


def titles(tab) -> list[str]:
    return tab.locator("#deal-results tbody td[data-column=title]").all_inner_texts()


def columns(tab) -> list[str]:
    return tab.eval_on_selector_all("#deal-results thead th[data-column]", "ths => ths.map(th => th.dataset.column)")


def test_sorting_choosing_columns_saving_a_view_and_a_bulk_move_with_one_refusal(page, org, board_pipeline):  # noqa: F811
    make_qualified_deal(owner=org.rep, pipeline=board_pipeline, title="Ready", amount=Decimal("5000"))
    make_deal(owner=org.rep, pipeline=board_pipeline, title="Bare", amount=None)
    make_deal(owner=org.rep, pipeline=board_pipeline, title="Small", amount=Decimal("100"))
    make_deal(owner=org.other_rep, pipeline=board_pipeline, title="Not mine", amount=Decimal("9"))
    violations = csp_violations(page)
    log_in(page, "rep")
    page.goto("/board/")
    page.click("a.button:has-text('Table')")
    page.wait_for_url("**/deals/?*")
    page.click("nav >> text=Deals")
    page.wait_for_url("**/deals/")
    assert sorted(titles(page)) == ["Bare", "Ready", "Small"]
    assert page.locator(".deal-count").inner_text() == "3 deals"

    # Sorting: by amount, largest first (no amount first, as the index keeps it), then the other way round.
    page.click("thead a:has-text('Amount')")
    page.wait_for_url("**sort=-amount**")
    assert titles(page) == ["Bare", "Ready", "Small"]
    assert page.get_attribute("th[data-column=amount]", "aria-sort") == "descending"
    page.click("thead a:has-text('Amount')")
    page.wait_for_url("**sort=amount**")
    assert titles(page) == ["Small", "Ready", "Bare"]

    # The column chooser: add the pipeline, drop the owner; the table follows without a page load.
    page.click(".column-chooser summary")
    page.click(".column-choices label:has-text('Pipeline')")
    page.wait_for_function("() => !!document.querySelector('#deal-results th[data-column=pipeline]')")
    page.click(".column-choices label:has-text('Owner')")
    page.wait_for_function("() => !document.querySelector('#deal-results th[data-column=owner]')")
    assert columns(page) == ["title", "pipeline", "stage", "organization", "amount", "expected_close_date"]
    assert "col=pipeline" in page.url and titles(page) == ["Small", "Ready", "Bare"]

    # A saved view keeps the sort and the columns, and opens them again from a plain /deals/.
    page.fill("#id_name", "Smallest first")
    page.click("button:has-text('Save view')")
    page.locator(".saved-view a", has_text="Smallest first").wait_for()
    assert SavedDealView.objects.get(owner=org.rep).name == "Smallest first"
    page.goto("/deals/")
    assert "pipeline" not in columns(page)
    page.click(".saved-view a:has-text('Smallest first')")
    page.wait_for_url("**col=pipeline**")
    assert "pipeline" in columns(page) and "owner" not in columns(page)
    assert titles(page) == ["Small", "Ready", "Bare"]

    # A bulk move: the deal without an amount is refused by name, the qualified one moves.
    page.check("input[aria-label='Select Ready']")
    page.check("input[aria-label='Select Bare']")
    page.select_option("#id_action", "stage")
    page.select_option("#id_bulk_stage", label="New Business · Proposal")
    page.click("button:has-text('Apply')")
    outcome = page.locator(".bulk-outcome")
    outcome.wait_for()
    assert "Changed 1, refused 1." in outcome.inner_text()
    assert "Bare: refused — Amount is required to enter the stage “Proposal”." in outcome.inner_text()
    assert "Ready: changed" in outcome.inner_text()
    assert page.locator("tr:has-text('Ready') td[data-column=stage]").inner_text() == "Proposal"
    assert Deal.objects.get(title="Ready").stage == stage(board_pipeline, "Proposal")
    assert Deal.objects.get(title="Bare").stage.name == "Prospecting"

    # At 768 px the page fits the window (a wide table scrolls inside its own box).
    page.set_viewport_size({"width": 768, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    assert violations == []
