"""Where a card is released decides what happens to it: only a drop on a column (or on Won/Lost) moves it; anything
else on the page, a toast included, never catches a drop."""

import os

import pytest

from pipeline.models import StageChange
from tests.factories import make_deal, make_lost_reason, stage
from tests.pipeline.test_browser import CHROMIUM, board_pipeline, browser, column, open_board, page  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]


def carry(page, card_selector: str, over_selector: str) -> tuple[float, float]:  # noqa: F811
    """Press on a card and carry it over a list until SortableJS has placed its ghost there; the mouse stays down."""
    start, end = page.locator(card_selector).bounding_box(), page.locator(over_selector).bounding_box()
    x0, y0 = start["x"] + 8, start["y"] + start["height"] - 8
    x1, y1 = end["x"] + end["width"] / 2, end["y"] + min(40, end["height"] / 2)
    page.mouse.move(x0, y0)
    page.mouse.down()
    for step in range(1, 13):
        page.mouse.move(x0 + (x1 - x0) * step / 12, y0 + (y1 - y0) * step / 12)
        page.wait_for_timeout(40)
    for attempt in range(40):
        placed = page.evaluate(
            "([target]) => { const g = document.querySelector('.drag-ghost');"
            " return !!g && g.parentElement === document.querySelector(target); }",
            [over_selector],
        )
        if placed:
            break
        page.mouse.move(x1 + (attempt % 2) * 3, y1 + (attempt % 3))
        page.wait_for_timeout(60)
    assert placed, f"the card never reached {over_selector}"
    return x1, y1


def release_over(page, start: tuple[float, float], target_selector: str) -> None:  # noqa: F811
    end = page.locator(target_selector).bounding_box()
    x1, y1 = end["x"] + end["width"] / 2, end["y"] + end["height"] / 2
    for step in range(1, 9):
        page.mouse.move(start[0] + (x1 - start[0]) * step / 8, start[1] + (y1 - start[1]) * step / 8)
        page.wait_for_timeout(40)
    page.wait_for_timeout(150)
    page.mouse.up()


def test_a_card_released_outside_any_column_goes_back_and_nothing_is_written(page, org, board_pipeline):  # noqa: F811
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    prospecting, qualification = stage(board_pipeline, "Prospecting"), stage(board_pipeline, "Qualification")
    changes = StageChange.objects.filter(deal=deal).count()
    open_board(page, "rep")

    moves = []
    page.on("request", lambda request: moves.append(request.url) if "/move/" in request.url else None)
    position = carry(page, f"#deal-{deal.pk}", column(qualification))
    release_over(page, position, ".board-title h1")

    page.locator(f"{column(prospecting)} #deal-{deal.pk}").wait_for()
    page.wait_for_timeout(500)  # a move request, had one been sent, would have answered by now
    assert moves == []
    assert page.locator(f"{column(qualification)} #deal-{deal.pk}").count() == 0
    deal.refresh_from_db()
    assert deal.stage == prospecting
    assert StageChange.objects.filter(deal=deal).count() == changes


def test_a_card_released_on_a_toast_over_the_lost_zone_opens_the_lost_dialog(page, org, board_pipeline):  # noqa: F811
    make_lost_reason("Price")
    first = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    second = make_deal(owner=org.rep, pipeline=board_pipeline, title="Globex renewal")
    qualification = stage(board_pipeline, "Qualification")
    open_board(page, "rep")
    release_over(page, carry(page, f"#deal-{first.pk}", column(qualification)), column(qualification))
    toast = page.locator("#toasts .toast", has_text="moved to Qualification")
    toast.wait_for()
    box, lost = toast.bounding_box(), page.locator(".dropzone.lost").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    assert lost["x"] < x < lost["x"] + lost["width"] and lost["y"] < y < lost["y"] + lost["height"]  # it covers Lost

    start = page.locator(f"#deal-{second.pk}").bounding_box()
    x0, y0 = start["x"] + 8, start["y"] + start["height"] - 8
    page.mouse.move(x0, y0)
    page.mouse.down()
    # Crossing Qualification on the way, as a hand does, then letting go on the toast.
    for step in range(1, 21):
        page.mouse.move(x0 + (x - x0) * step / 20, y0 + (y - y0) * step / 20)
        page.wait_for_timeout(40)
    page.wait_for_timeout(300)
    assert toast.is_visible()  # still there when the card is let go
    page.mouse.up()

    page.locator("#move-dialog select[name=lost_reason]").wait_for()
    second.refresh_from_db()
    assert second.stage == stage(board_pipeline, "Prospecting")  # nothing written until the reason is given
