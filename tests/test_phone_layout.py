"""Every page on a phone (Debian's Chromium with touch, 360×740 and 390×844, as in tests/pipeline/test_board_layout.py):
nothing wider than the screen, a menu button that opens the navigation, one column on the deal page, and a board
that scrolls by column with the Won and Lost zones in reach of a finger while dragging."""

import os
import pprint
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from accounts.services import create_api_token
from forecasting.services import create_quota, recompute_metrics
from pipeline import services
from pipeline.models import ImportJob, SavedDealView
from tests.factories import make_deal, make_lost_reason, stage
from tests.pipeline.test_browser import (  # noqa: F401 (fixtures)
    CHROMIUM,
    board_pipeline,
    browser,
    column,
    csp_violations,
    log_in,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]

PHONES = [
    pytest.param({"width": 360, "height": 740}, id="360x740"),
    pytest.param({"width": 390, "height": 844}, id="390x844"),
]

# Paths that are not pages of the browser app: the API, its docs, Django's admin, the health check, logging out.
NOT_PAGES = re.compile(r"^\^?(api/|admin/|healthz|logout/)")


@pytest.fixture(params=PHONES)
def phone(request, browser, live_server, transactional_db):  # noqa: F811
    context = browser.new_context(
        viewport=request.param, base_url=live_server.url, has_touch=True, is_mobile=True, device_scale_factor=2
    )
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], errors


def overflow(tab) -> int:
    """How many pixels the document is wider than the phone's screen (0 or less when nothing sticks out). Measured
    against the viewport asked for, not window.innerWidth: a mobile browser zooms out to show a page wider than the
    screen, and its innerWidth grows with the page."""
    return tab.evaluate("() => document.documentElement.scrollWidth") - tab.viewport_size["width"]


# The outermost elements whose right edge is past the screen and that no scrolling box clips, for the failure
# message: where to look.
STICKING_OUT = """(width) => {
  const clipped = (el) => {
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== "visible") return true;
    }
    return false;
  };
  const out = [...document.querySelectorAll("body *")]
    .filter((el) => el.getBoundingClientRect().right > width + 1 && !clipped(el))
    .filter((el) => getComputedStyle(el).position !== "fixed"); // a fixed box follows the zoomed-out window
  const outermost = out.filter((el) => !out.includes(el.parentElement));
  return outermost.slice(0, 4).map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\\s+/).join(".") : "")
    + " " + Math.round(el.getBoundingClientRect().right));
}"""


def sticking_out(tab) -> list[str]:
    return tab.evaluate(STICKING_OUT, tab.viewport_size["width"])


def routes(patterns=None, prefix: str = "") -> list[str]:
    """Every URL pattern of the project as a route string ("deals/<int:pk>/"), includes flattened."""
    found = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            found += routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            found.append(prefix + str(entry.pattern))
    return found


def fill(route: str, objects: dict[str, object]) -> str:
    """The route with each parameter replaced by the pk of a real row: `pk` by the kind of row the segment before
    it names ("deals/<int:pk>/" → a deal), any other parameter by its own name ("<int:pipeline_id>")."""
    segments = route.split("/")
    for index, segment in enumerate(segments):
        parameter = re.fullmatch(r"<(?:\w+:)?(\w+)>", segment)
        if not parameter:
            continue
        key = segments[index - 1] if parameter[1] == "pk" else parameter[1]
        assert key in objects, f"No row to show for {route!r}: add one under {key!r} in every_kind_of_row"
        segments[index] = str(getattr(objects[key], "pk", objects[key]))
    return "/" + "/".join(segments)


@pytest.fixture
def every_kind_of_row(org, board_pipeline):  # noqa: F811
    """One row of each kind a page shows, with long names and big numbers, as a phone meets them."""
    acme = services.create_organization(
        actor=org.rep, name="Acme Incorporated International Holdings", industry="Retail", website="https://acme.test"
    )
    lee = services.create_contact(
        actor=org.rep,
        first_name="Annabelle",
        last_name="Leeworthington",
        email="ann.lee.long.address@acme.test",
        organization=acme,
    )
    deal = make_deal(
        owner=org.rep,
        pipeline=board_pipeline,
        title="Acme rollout for every warehouse in the region",
        organization=acme,
        contact=lee,
        amount=Decimal("123456789"),
    )
    activity = services.log_activity(
        actor=org.rep,
        kind="call",
        subject="Call the buyer about the rollout",
        deal=deal,
        due_at=timezone.now() - timedelta(days=2),
    )
    lead = services.create_lead(actor=org.rep, last_name="Prospectsworth", company="Globex Worldwide Logistics")
    reason = make_lost_reason("Price")
    token, _ = create_api_token(user=org.admin, name="Phone test token")
    start = date.today().replace(day=1)
    quota = create_quota(
        actor=None,
        user=org.rep,
        period_start=start,
        period_end=(start + timedelta(days=32)).replace(day=1),
        amount=Decimal("250000"),
    )
    job = ImportJob.objects.create(kind="deals", original_name="pipeline.csv", created_by=org.admin)
    view = SavedDealView.objects.create(owner=org.admin, name="Big deals this quarter", query="amount_min=100000")
    recompute_metrics()  # the dashboard with its figures and charts, not its empty state
    return {
        "deals": deal,
        "organizations": acme,
        "contacts": lee,
        "activities": activity,
        "leads": lead,
        "lost-reasons": reason,
        "tokens": token,
        "quotas": quota,
        "imports": job,
        "views": view,
        "user_id": org.rep,
        "team_id": org.team,
        "teams": org.team,
        "pipelines": board_pipeline,
        "pipeline_id": board_pipeline,
        "stages": stage(board_pipeline, "Discovery"),
        "stage_id": stage(board_pipeline, "Discovery"),
        "task_id": "no-such-task",
        "name": "title",  # a deal field edited in place (/deals/<id>/fields/<name>/): a fragment, not a page
    }


def pages(user, objects) -> list[str]:
    """The URLs of every full page a GET shows to `user` (an admin sees them all): each route of the project with
    its parameters filled, kept when it answers 200 with a whole HTML document. Forms that only take a POST, htmx
    fragments and downloads drop out by their answer, so a new page is checked without anyone listing it here."""
    client = Client()
    client.force_login(user)
    found = []
    for route in routes():
        if NOT_PAGES.match(route):
            continue
        url = fill(route, objects)
        response = client.get(url)
        html = response.status_code == 200 and response.get("Content-Type", "").startswith("text/html")
        if html and response.content.lstrip().lower().startswith(b"<!doctype html"):
            found.append(url)
    return found


def test_no_page_is_wider_than_a_phone(phone, org, every_kind_of_row):
    urls = pages(org.admin, every_kind_of_row)
    assert len(urls) >= 25, urls  # the collection found the app's pages, not a handful

    phone.goto("/login/")
    wide = {"/login/": (overflow(phone), sticking_out(phone))} if overflow(phone) > 0 else {}
    log_in(phone, "admin")
    for url in urls:
        phone.goto(url)
        phone.wait_for_load_state("load")
        if overflow(phone) > 0:
            wide[url] = (overflow(phone), sticking_out(phone))
    assert wide == {}, pprint.pformat(wide)


def test_the_dashboards_key_figures_show_whole_on_a_phone(phone, org, every_kind_of_row):
    log_in(phone, "manager")
    phone.goto("/dashboard/")

    figures = phone.locator(".kpi .kpi-value")
    assert figures.count() >= 4
    cut = phone.evaluate(
        "() => [...document.querySelectorAll('.kpi-label, .kpi-value')]"
        ".filter((el) => el.scrollWidth > el.clientWidth).map((el) => el.textContent.trim())"
    )
    assert cut == []


def test_the_menu_button_opens_the_navigation_with_import_and_log_out(phone, org):
    log_in(phone, "rep")
    phone.goto("/board/")
    button = phone.get_by_role("button", name="Menu")
    content_top = phone.locator("main").bounding_box()["y"]
    bar_height = phone.locator(".topbar").bounding_box()["height"]
    import_link, log_out = phone.locator(".topbar a", has_text="Import"), phone.get_by_role("button", name="Log out")
    assert not import_link.is_visible() and not log_out.is_visible()
    assert button.get_attribute("aria-expanded") == "false"

    button.tap()

    assert import_link.is_visible() and log_out.is_visible()
    assert button.get_attribute("aria-expanded") == "true"
    # The menu drops over the page: the bar keeps its height and the page below does not move.
    assert phone.locator(".topbar").bounding_box()["height"] == bar_height
    assert phone.locator("main").bounding_box()["y"] == content_top
    for link in (import_link, log_out):  # every link of the open menu is on the screen
        box = link.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= phone.viewport_size["width"]

    phone.keyboard.press("Escape")
    assert not import_link.is_visible()
    assert phone.evaluate("() => document.activeElement.matches('[data-menu-toggle]')")

    # From the keyboard alone: the button takes Enter, and the links follow it in the tab order.
    phone.keyboard.press("Enter")
    assert import_link.is_visible()
    phone.keyboard.press("Tab")
    assert phone.evaluate("() => document.activeElement.closest('nav') !== null")
    import_link.click()
    phone.wait_for_url("**/imports/")


def test_the_deal_page_is_one_column_on_a_phone(phone, org, every_kind_of_row):
    log_in(phone, "rep")
    phone.goto(f"/deals/{every_kind_of_row['deals'].pk}/")

    details, activity = phone.locator(".grid > .stack"), phone.locator(".grid > section.card")
    details_box, activity_box = details.bounding_box(), activity.bounding_box()
    assert activity_box["y"] >= details_box["y"] + details_box["height"]  # below, not beside
    assert abs(activity_box["x"] - details_box["x"]) < 1 and abs(activity_box["width"] - details_box["width"]) < 1


def test_the_board_scrolls_by_column(phone, org, board_pipeline):  # noqa: F811
    make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    log_in(phone, "rep")
    phone.goto("/board/")
    phone.wait_for_selector("#board .column")

    columns = phone.locator("#board .column")
    first, second = columns.nth(0).bounding_box(), columns.nth(1).bounding_box()
    assert first["width"] < phone.viewport_size["width"] <= first["width"] * 1.5  # one column, the next one peeks
    assert second["x"] < phone.viewport_size["width"]
    # Half a swipe lets go: the board settles on the start of a column, not in between.
    phone.evaluate("() => document.querySelector('#board .columns').scrollBy({ left: 120 })")
    phone.wait_for_timeout(600)
    offsets = phone.evaluate(
        "() => { const row = document.querySelector('#board .columns'), first = row.firstElementChild;"
        " const lefts = [...row.querySelectorAll('.column')].map((c) => c.offsetLeft - first.offsetLeft);"
        " return [row.scrollLeft, lefts]; }"
    )
    scroll_left, column_lefts = offsets
    assert scroll_left > 0
    assert min(abs(scroll_left - left) for left in column_lefts) <= 1, offsets


def touch_drag(tab, card_selector: str, target_selector: str) -> None:
    """Drag with a finger, as Chromium's touch events carry it (CDP's Input.dispatchTouchEvent): press and hold until
    the card is picked up, move in steps, hold over the target until SortableJS has placed the card, lift. A target
    partly off the screen (the next column, peeking in) is reached where it shows."""
    cdp = tab.context.new_cdp_session(tab)
    width = tab.viewport_size["width"]
    start, end = tab.locator(card_selector).bounding_box(), tab.locator(target_selector).bounding_box()
    x0, y0 = start["x"] + 16, start["y"] + start["height"] / 2
    x1 = min(end["x"] + end["width"] / 2, end["x"] + 16, width - 8) if end["x"] + end["width"] > width else None
    x1 = x1 if x1 is not None else end["x"] + end["width"] / 2
    y1 = end["y"] + min(40, end["height"] / 2)

    def touch(kind: str, x: float, y: float) -> None:
        points = [] if kind == "touchEnd" else [{"x": x, "y": y, "id": 1}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", x0, y0)
    tab.wait_for_timeout(400)  # a press and hold picks the card up; a quick swipe scrolls instead
    steps = 12
    for step in range(1, steps + 1):
        touch("touchMove", x0 + (x1 - x0) * step / steps, y0 + (y1 - y0) * step / steps)
        tab.wait_for_timeout(40)
    for attempt in range(40):
        placed = tab.evaluate(
            "([target]) => { const g = document.querySelector('.drag-ghost');"
            " return !!g && g.parentElement === document.querySelector(target); }",
            [target_selector],
        )
        if placed:
            break
        touch("touchMove", x1 + (attempt % 2) * 3, y1 + (attempt % 3))
        tab.wait_for_timeout(60)
    touch("touchEnd", x1, y1)
    cdp.detach()


def test_a_touch_drag_moves_a_card_to_the_next_column(phone, org, board_pipeline):  # noqa: F811
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    qualification = stage(board_pipeline, "Qualification")
    violations = csp_violations(phone)
    log_in(phone, "rep")
    phone.goto("/board/")
    phone.wait_for_selector("#board .column")

    touch_drag(phone, f"#deal-{deal.pk}", column(qualification))

    phone.locator("#toasts .toast", has_text="moved to Qualification").wait_for()
    deal.refresh_from_db()
    assert deal.stage == qualification
    assert phone.locator(f"{column(qualification)} #deal-{deal.pk}").count() == 1
    assert violations == []


def test_the_won_and_lost_zones_are_in_reach_of_a_touch_drag(phone, org, board_pipeline, lost_reason):  # noqa: F811
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    log_in(phone, "rep")
    phone.goto("/board/")
    phone.wait_for_selector("#board .column")
    for zone in (".dropzone.won", ".dropzone.lost"):  # on the screen, without scrolling
        box = phone.locator(zone).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= phone.viewport_size["width"]
        assert box["y"] + box["height"] <= phone.viewport_size["height"]

    touch_drag(phone, f"#deal-{deal.pk}", ".dropzone.lost")

    dialog = phone.locator("#move-dialog")
    dialog.locator("select[name=lost_reason]").select_option(str(lost_reason.pk))
    dialog.locator("button[type=submit]").tap()
    phone.locator("#toasts .toast", has_text="is lost").wait_for()
    deal.refresh_from_db()
    assert (deal.status, deal.lost_reason) == ("lost", lost_reason)

    other = make_deal(owner=org.rep, pipeline=board_pipeline, title="Globex renewal")
    phone.reload()
    phone.wait_for_selector(f"#deal-{other.pk}")
    touch_drag(phone, f"#deal-{other.pk}", ".dropzone.won")
    phone.locator("#toasts .toast", has_text="is won").wait_for()
    other.refresh_from_db()
    assert other.status == "won"
