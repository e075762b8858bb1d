"""The board at 1440×900 as a rep sees it: every column of a six-stage pipeline in the window, a card that keeps
its size when hovered (its Move control floats over it), and a drag that breaks no Content-Security-Policy rule."""

import os

import pytest
from django.db import transaction

from tests.factories import CLASSIC_STAGES, make_deal, make_pipeline, stage
from tests.pipeline.test_browser import (  # noqa: F401 (fixtures)
    CHROMIUM,
    board_pipeline,
    browser,
    column,
    csp_violations,
    drag,
    open_board,
    page,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]


def test_all_six_columns_of_a_pipeline_fit_in_a_1440_px_window(page, org, transactional_db):  # noqa: F811
    six = [*CLASSIC_STAGES[:5], ("Contracting", "open", 90, [], "commit"), *CLASSIC_STAGES[5:]]
    with transaction.atomic():
        make_pipeline(name="Enterprise", is_default=True, stages=six)
    open_board(page, "rep")

    columns = page.locator("#board .column")
    assert columns.count() == 6
    right = columns.nth(5).bounding_box()
    assert right["x"] + right["width"] <= 1440
    assert page.evaluate(
        "() => { const c = document.querySelector('#board .columns'); return c.scrollWidth <= c.clientWidth; }"
    )


def test_a_hovered_card_keeps_its_size_and_its_column_does_not_shift(page, org, board_pipeline):  # noqa: F811
    first = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    second = make_deal(owner=org.rep, pipeline=board_pipeline, title="Globex renewal")
    open_board(page, "rep")
    cards = {deal.pk: page.locator(f"#deal-{deal.pk}").bounding_box() for deal in (first, second)}
    top, below = sorted(cards, key=lambda pk: cards[pk]["y"])

    page.hover(f"#deal-{top} h3 a")

    assert page.locator(f"#deal-{top} .move-to").is_visible()  # the board's one Move control is offered on hover
    assert page.locator(".move-to").count() == 1
    assert page.locator(f"#deal-{top}").bounding_box()["height"] == cards[top]["height"]
    assert page.locator(f"#deal-{below}").bounding_box()["y"] == cards[below]["y"]


def test_a_drag_to_another_column_logs_no_content_security_policy_error(page, org, board_pipeline):  # noqa: F811
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    qualification = stage(board_pipeline, "Qualification")
    violations = csp_violations(page)
    open_board(page, "rep")

    drag(page, f"#deal-{deal.pk}", column(qualification))

    page.locator("#toasts .toast", has_text="moved to Qualification").wait_for()
    page.wait_for_timeout(300)  # htmx settles attributes 20 ms after the swap
    assert violations == []
