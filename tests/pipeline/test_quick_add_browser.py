"""The quick add at the top of a board column in a real browser: "+" opens the small form in the column, an added
deal's card goes to the top of the column with the header's totals drawn again, and a stage's required field is
refused at that field with nothing written."""

import os
from decimal import Decimal

import pytest

from pipeline.models import Deal
from pipeline.templatetags.crm import money_short
from tests.factories import make_deal, stage
from tests.pipeline.test_browser import (  # noqa: F401 (fixtures)
    CHROMIUM,
    board_pipeline,
    browser,
    column,
    csp_violations,
    open_board,
    page,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]


def test_a_quick_add_in_qualification_shows_the_card_on_top_and_the_new_total(page, org, board_pipeline):  # noqa: F811
    qualification = stage(board_pipeline, "Qualification")
    older = make_deal(owner=org.rep, pipeline=board_pipeline, stage=qualification, amount=Decimal("1000"))
    violations = csp_violations(page)
    open_board(page, "rep")

    page.click(f"#col-head-{qualification.pk} .add")
    form = page.locator(f"#quick-add-{qualification.pk} form")
    page.wait_for_function("() => document.activeElement.name === 'title'")  # htmx settles 20 ms after the swap
    page.keyboard.type("Acme expansion")
    page.click(f"#col-head-{qualification.pk} .add")  # again: the open form keeps what was typed
    assert form.locator("input[name=title]").input_value() == "Acme expansion"
    assert page.evaluate("document.activeElement.name") == "title"
    form.locator("input[name=amount]").fill("2500")
    form.locator("button[type=submit]").click()

    page.locator("#toasts .toast", has_text="Created “Acme expansion” in Qualification.").wait_for()
    deal = Deal.objects.get(title="Acme expansion")
    cards = page.locator(f"{column(qualification)} .deal-card")
    assert cards.evaluate_all("cards => cards.map(card => card.id)") == [f"deal-{deal.pk}", f"deal-{older.pk}"]
    rows = Deal.objects.filter(stage=qualification, owner=org.rep)
    header = page.locator(f"#col-head-{qualification.pk}")
    assert header.locator(".count").inner_text() == str(rows.count()) == "2"
    assert header.locator(".total").inner_text() == money_short(sum(row.amount for row in rows)) == "$3.5k"
    assert page.locator(f"#quick-add-{qualification.pk} form").count() == 0  # the form closed
    page.wait_for_function("() => document.activeElement.classList.contains('add')")  # ready for the next one
    assert violations == []


def test_a_quick_add_in_a_stage_that_requires_an_amount_is_refused_at_the_field(page, org, board_pipeline):  # noqa: F811
    discovery = stage(board_pipeline, "Discovery")
    open_board(page, "rep")

    page.click(f"#col-head-{discovery.pk} .add")
    form = page.locator(f"#quick-add-{discovery.pk} form")
    form.locator("input[name=title]").fill("No amount yet")
    form.locator("button[type=submit]").click()

    error = form.locator(".field.has-error .field-error")
    error.wait_for()
    assert error.inner_text() == "Amount is required to enter the stage “Discovery”."
    page.wait_for_function("() => document.activeElement.name === 'amount'")  # the refused field has the focus
    assert form.locator("input[name=title]").input_value() == "No amount yet"  # what was typed is kept
    assert not Deal.objects.exists()
    assert page.locator(f"#col-head-{discovery.pk} .count").inner_text() == "0"

    page.keyboard.press("Escape")
    assert page.locator(f"#quick-add-{discovery.pk} form").count() == 0
    assert not Deal.objects.exists()
