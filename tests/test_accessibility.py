"""Every page a rep, a manager and the admin reach, and the login page, checked by axe-core (pinned in
package-lock.json as a devDependency, installed into build/test-vendor/ by `python -m config.assets`, never served)
for WCAG 2 A and AA: no serious or critical violation anywhere. The pages are found by tests/test_phone_layout.py's
route sweep, so a new page is checked without anyone listing it here. Also: a dialog gives the focus back to what
opened it."""

import json
import os

import pytest

from config.assets import TEST_VENDOR_DIR
from tests.factories import make_deal, make_lost_reason, stage
from tests.pipeline.test_browser import (  # noqa: F401 (fixtures)
    CHROMIUM,
    board_pipeline,
    browser,
    column,
    drag,
    log_in,
    open_board,
    page,
)
from tests.test_phone_layout import every_kind_of_row, pages  # noqa: F401 (fixture)

AXE = TEST_VENDOR_DIR / "axe.min.js"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]

# The impacts the target counts; "moderate" and "minor" findings are advice, not failures.
BLOCKING = ("serious", "critical")

# axe.run over the whole document for the WCAG 2.0/2.1 A and AA rules: the blocking violations come back, each with
# the CSS selectors of the elements it found (and why), so a failure says where to look. A table header with no text
# (axe's best-practice rule "empty-table-header", of minor impact) fails too: a screen reader announces nothing there.
RUN_AXE = """async (blocking) => {
  const shape = (v) => ({ rule: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) =>
    n.target.join(" ") + (n.failureSummary ? "  — " + n.failureSummary.split("\\n").slice(1).join(" ") : "")) });
  const wcag = await axe.run(document, {
    runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
    resultTypes: ["violations"],
  });
  const headers = await axe.run(document, {
    runOnly: { type: "rule", values: ["empty-table-header"] }, resultTypes: ["violations"],
  });
  return wcag.violations.filter((v) => blocking.includes(v.impact)).concat(headers.violations).map(shape);
}"""


def with_axe(tab) -> None:
    """axe-core in every document the tab loads from now on. An init script is not an inline <script>, so the app's
    strict Content-Security-Policy stays as users get it."""
    assert AXE.exists(), f"{AXE} is missing: run `python -m config.assets` (make test does)"
    tab.context.add_init_script(path=str(AXE))


def violations(tab) -> list[dict]:
    """The serious and critical WCAG A/AA violations of the page as it is shown now (htmx panels loaded)."""
    tab.wait_for_load_state("networkidle")
    return tab.evaluate(RUN_AXE, list(BLOCKING))


def report(found: dict[str, list[dict]]) -> str:
    return json.dumps(found, indent=2, ensure_ascii=False)


def test_the_login_page_has_no_serious_accessibility_violations(page, org):  # noqa: F811
    with_axe(page)
    page.goto("/login/")
    found = violations(page)
    assert found == [], report({"/login/": found})


@pytest.mark.parametrize(
    ("username", "viewport"),
    [
        pytest.param("rep", None, id="rep"),
        pytest.param("manager", None, id="manager"),
        pytest.param("admin", None, id="admin"),
        # The phone layout recolours and folds some parts (the menu button, tables as blocks): checked once.
        pytest.param("manager", {"width": 390, "height": 844}, id="manager-390x844"),
    ],
)
def test_every_page_has_no_serious_accessibility_violations(page, org, every_kind_of_row, username, viewport):  # noqa: F811
    urls = pages(getattr(org, username), every_kind_of_row)
    assert len(urls) >= 15, urls  # the sweep found the pages, not a handful
    if viewport:
        page.set_viewport_size(viewport)
    with_axe(page)
    log_in(page, username)

    found = {}
    for url in urls:
        page.goto(url)
        if problems := violations(page):
            found[url] = problems
    assert found == {}, report(found)


def test_the_move_dialog_has_no_serious_accessibility_violations(page, org, board_pipeline):  # noqa: F811
    make_lost_reason("Price")
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    with_axe(page)
    open_board(page, "rep")

    drag(page, f"#deal-{deal.pk}", ".dropzone.lost")
    page.locator("#move-dialog select[name=lost_reason]").wait_for()

    found = violations(page)
    assert found == [], report({"/board/ with the move dialog": found})


def focused_card(tab) -> str | None:
    """The id of the card holding the focus, or None when the focus is elsewhere (the body, once lost)."""
    return tab.evaluate("() => document.activeElement.closest('.deal-card')?.id ?? null")


def test_escape_closes_the_move_dialog_and_gives_the_focus_back_to_the_dragged_card(page, org, board_pipeline):  # noqa: F811
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    prospecting = stage(board_pipeline, "Prospecting")
    open_board(page, "rep")

    drag(page, f"#deal-{deal.pk}", column(stage(board_pipeline, "Discovery")))
    amount = page.locator("#move-dialog input[name=amount]")
    amount.wait_for()
    assert page.evaluate("() => document.activeElement.name") == "amount"  # the dialog took the focus

    page.keyboard.press("Escape")

    page.locator(f"{column(prospecting)} #deal-{deal.pk}").wait_for()
    assert not page.locator("#move-dialog").evaluate("d => d.open")
    page.wait_for_function(f"() => document.activeElement.closest('#deal-{deal.pk}') !== null")
    assert focused_card(page) == f"deal-{deal.pk}"


def test_the_keyboard_move_button_gets_the_focus_back_after_escape_and_a_move_asking_for_fields(
    page,  # noqa: F811
    org,
    board_pipeline,  # noqa: F811
):
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    open_board(page, "rep")
    card = f"#deal-{deal.pk}"

    page.focus(f"{card} h3 a")
    page.keyboard.press("Tab")  # onto the board's one Move button, shown in the focused card
    page.wait_for_function(f"() => document.activeElement.matches('{card} .move-to')")
    page.keyboard.press("Enter")
    page.locator("#move-to-dialog select").wait_for()
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.getElementById('move-to-dialog').open")
    # Back on the Move button of the card, so Enter opens the dialog again.
    page.wait_for_function(f"() => document.activeElement.matches('{card} .move-to')")

    page.keyboard.press("Enter")
    page.locator("#move-to-dialog select").select_option(str(stage(board_pipeline, "Discovery").pk))  # needs an amount
    page.locator("#move-to-dialog button[type=submit]").click()
    page.locator("#move-dialog input[name=amount]").wait_for()
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.getElementById('move-dialog').open")
    page.wait_for_function(f"() => document.activeElement.closest('{card}') !== null")
    assert focused_card(page) == f"deal-{deal.pk}"
    deal.refresh_from_db()
    assert deal.stage.name == "Prospecting"


def test_escape_on_the_deal_pages_lost_dialog_gives_the_focus_back_to_the_lost_button(page, org, board_pipeline):  # noqa: F811
    make_lost_reason("Price")
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    log_in(page, "rep")
    page.goto(f"/deals/{deal.pk}/")

    page.focus(".record-head button[data-close-as=lost]")
    page.keyboard.press("Enter")
    page.locator("#move-dialog select[name=lost_reason]").wait_for()
    page.keyboard.press("Escape")

    page.wait_for_function("() => !document.getElementById('move-dialog').open")
    page.wait_for_function("() => document.activeElement.matches('.record-head button[data-close-as=lost]')")
    deal.refresh_from_db()
    assert deal.status == "open"
