"""The deal page after a save: every part of it carries the new version and values, and a real conflict with
someone else's change is shown where the user looks, keeping what they typed."""

import os
from decimal import Decimal

import pytest

from pipeline import services
from tests.factories import make_deal, stage
from tests.pipeline.test_browser import CHROMIUM, board_pipeline, browser, log_in, page  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]

IN_VIEW = "e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight; }"


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


def test_a_real_conflict_is_shown_at_the_field_keeps_the_typed_values_and_can_be_reapplied(page, org, board_pipeline):  # noqa: F811
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout", amount=Decimal("900"))
    log_in(page, "rep")
    edit_fields(page, deal)
    page.fill("#deal-fields input[name=amount]", "5000")
    page.fill("#deal-fields input[name=title]", "Acme rollout, phase 2")
    # Meanwhile a manager changes the amount (which the rep changed too) and the source (which the rep left alone).
    services.update_deal(deal=deal, actor=org.manager, amount=Decimal("777"), source="Referral")

    page.click("#deal-fields button[type=submit]")

    page.locator("#toasts .toast.error", has_text="changed by someone else").wait_for()
    amount = page.locator("#deal-fields .field", has=page.locator("input[name=amount]"))
    message = amount.locator(".field-error")
    assert "$777" in message.inner_text()
    assert message.evaluate(IN_VIEW)
    assert page.input_value("#deal-fields input[name=amount]") == "5000"  # what the rep typed, beside theirs
    assert page.input_value("#deal-fields input[name=title]") == "Acme rollout, phase 2"
    assert page.input_value("#deal-fields input[name=source]") == "Referral"  # theirs, which the rep did not touch
    deal.refresh_from_db()
    assert (deal.amount, deal.title) == (Decimal("777"), "Acme rollout")  # nothing written yet

    page.click("#deal-fields button[type=submit]")

    page.locator("#toasts .toast", has_text="Saved.").wait_for()
    deal.refresh_from_db()
    assert (deal.amount, deal.title, deal.source) == (Decimal("5000"), "Acme rollout, phase 2", "Referral")
    assert page.locator(".record-head h1").inner_text() == "Acme rollout, phase 2"
