"""The settings pages in a real browser (Debian's Chromium through Playwright, as in tests/pipeline/test_browser.py):
dragging a stage, the keyboard up/down control, and an API token shown once then revoked."""

import os

import pytest
from django.test import Client

from accounts.models import ApiToken
from pipeline import services
from pipeline.models import LostReason, StageKind
from tests.pipeline.test_browser import CHROMIUM, board_pipeline, browser, log_in, page  # noqa: F401

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]


def open_names(pipeline) -> list[str]:
    return list(pipeline.stages.filter(kind=StageKind.OPEN).order_by("order").values_list("name", flat=True))


def screenshot(shown, name: str) -> None:
    """Save a screenshot when SCREENSHOT_DIR is set (for a person to look at; never into the repository)."""
    if os.environ.get("SCREENSHOT_DIR"):
        shown.screenshot(path=os.path.join(os.environ["SCREENSHOT_DIR"], name), full_page=True)


def test_dragging_a_stage_to_the_top_persists_the_new_order(page, org, board_pipeline):  # noqa: F811
    names = open_names(board_pipeline)
    dragged = board_pipeline.stages.get(name=names[-1])
    log_in(page, "admin")
    page.goto(f"/settings/pipelines/{board_pipeline.pk}/")
    handle = page.locator(f"#stage-{dragged.pk} .drag-handle").bounding_box()
    first = page.locator("#stage-list .stage-row").first.bounding_box()
    x0, y0 = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    x1, y1 = first["x"] + 20, first["y"] + 4
    page.mouse.move(x0, y0)
    page.mouse.down()
    for step in range(1, 13):
        page.mouse.move(x0 + (x1 - x0) * step / 12, y0 + (y1 - y0) * step / 12)
        page.wait_for_timeout(40)
    for attempt in range(40):
        if page.evaluate(f"document.querySelector('#stage-list .stage-row').dataset.stageId === '{dragged.pk}'"):
            break
        page.mouse.move(x1 + (attempt % 2) * 3, y1 - (attempt % 3))
        page.wait_for_timeout(60)
    page.mouse.up()
    page.wait_for_selector("#stage-list-status:has-text('Saved the new order.')")
    # One status, saying only that it is saved (the list's answer once brought a second one, left at "Saving…").
    assert page.locator("[id=stage-list-status]").count() == 1
    assert "Saving" not in page.locator("main").inner_text()

    assert open_names(board_pipeline) == [names[-1], *names[:-1]]
    page.reload()
    first_name = page.locator("#stage-list .stage-row .stage-name").first.inner_text()
    assert names[-1] in first_name
    orders = list(board_pipeline.stages.order_by("order").values_list("order", flat=True))
    assert orders == list(range(1, len(orders) + 1))


def test_the_up_and_down_buttons_work_from_the_keyboard(page, org, board_pipeline):  # noqa: F811
    names = open_names(board_pipeline)
    second = board_pipeline.stages.get(name=names[1])
    log_in(page, "admin")
    page.goto(f"/settings/pipelines/{board_pipeline.pk}/")
    page.locator(f"#stage-{second.pk} .move-up").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert open_names(board_pipeline) == [names[1], names[0], *names[2:]]
    page.locator(f"#stage-{second.pk} .move-down").focus()
    with page.expect_navigation():
        page.keyboard.press("Space")
    assert open_names(board_pipeline) == names
    # At 768 px the page still fits the window.
    page.set_viewport_size({"width": 768, "height": 1000})
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    screenshot(page, "settings-pipeline-768.png")


def test_a_token_is_shown_once_then_revoked_and_stops_working(page, org):  # noqa: F811
    log_in(page, "rep")
    page.goto("/settings/tokens/")
    page.fill("#id_name", "Reporting script")
    page.click("text=Create token")
    secret = page.input_value("#new-token")
    assert secret.startswith("crm_")
    page.click("[data-copy]")
    page.wait_for_selector("[data-copy]:has-text('Copied')")
    page.set_viewport_size({"width": 768, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    screenshot(page, "settings-tokens-768.png")
    assert Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200

    page.goto("/settings/tokens/")
    assert secret not in page.content() and "Reporting script" in page.content()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Revoke')")
    page.wait_for_selector(f"#token-{ApiToken.objects.get().pk} .pill:has-text('Revoked')")

    assert Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401


def test_reloading_after_creating_a_token_creates_no_second_one_and_revoking_asks_first(page, org):  # noqa: F811
    log_in(page, "rep")
    page.goto("/settings/tokens/")
    page.fill("#id_name", "Reporting script")
    page.click("text=Create token")
    secret = page.input_value("#new-token")

    page.reload()

    assert ApiToken.objects.filter(user=org.rep).count() == 1
    assert page.locator("#new-token").count() == 0 and secret not in page.content()
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    page.click("button:has-text('Revoke')")
    page.wait_for_timeout(300)
    assert "Revoke the token “Reporting script”?" in questions[0]
    assert ApiToken.objects.get().revoked_at is None  # said no: nothing happened
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Revoke')")
    page.wait_for_selector(f"#token-{ApiToken.objects.get().pk} .pill:has-text('Revoked')")
    assert ApiToken.objects.get().revoked_at is not None


def test_a_lost_reason_differing_only_in_case_is_refused_with_a_readable_message(page, org):  # noqa: F811
    services.create_lost_reason(actor=None, name="Price")
    log_in(page, "admin")
    page.goto("/settings/lost-reasons/")
    page.fill("#id_name", "price")
    page.click("button:has-text('Add reason')")

    page.locator(".field-error, .form-errors", has_text="already exists (names ignore case)").wait_for()
    assert list(LostReason.objects.values_list("name", flat=True)) == ["Price"]
