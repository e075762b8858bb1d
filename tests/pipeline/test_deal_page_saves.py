"""The deal page after a save: every part of it carries the new version and values, and a real conflict with
someone else's change is shown where the user looks, keeping what they typed."""

import os
from decimal import Decimal

import pytest

from tests.factories import make_deal, stage
from tests.pipeline.test_browser import CHROMIUM, board_pipeline, browser, log_in, page  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]


def edit_fields(page, deal) -> None:  # noqa: F811
    page.goto(f"/deals/{deal.pk}/")
    page.click("#deal-fields button:has-text('Edit')")
    page.locator("#deal-fields input[name=amount]").wait_for()


def test_after_saving_a_field_the_header_shows_the_new_amount_and_its_move_is_accepted(page, org, board_pipeline):  # noqa: F811
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout", amount=Decimal("900"))
    log_in(page, "rep")
    edit_fields(page, deal)

    page.fill("#deal-fields input[name=amount]", "12500")
    page.click("#deal-fields button[type=submit]")
    page.locator("#toasts .toast", has_text="Saved.").wait_for()

    assert page.locator(".record-head .figure").inner_text() == "$12,500"
    page.select_option("#move-stage", str(stage(board_pipeline, "Qualification").pk))
    page.click(".record-head button[type=submit]")
    page.locator(".stage-step.current", has_text="Qualification").wait_for()
    assert page.locator("#toasts .toast.error").count() == 0
    deal.refresh_from_db()
    assert (deal.stage.name, deal.amount) == ("Qualification", Decimal("12500"))
