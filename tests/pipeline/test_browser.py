"""The pages in a real browser: Playwright drives Debian's Chromium (never `playwright install`) against
pytest-django's live server, so htmx, SortableJS and our static JS run as they do for a user."""

import os
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from pipeline import services
from pipeline.models import Activity, Deal, Lead
from tests.factories import leave_untouched, make_deal, make_lost_reason, make_pipeline, stage

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make meanwhile are
    # ordinary synchronous code, which Django would otherwise refuse.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def board_pipeline(transactional_db):
    # Stages are checked at commit (one won, one lost): create them in one transaction, as an admin would.
    with transaction.atomic():
        return make_pipeline(name="New Business", is_default=True)


@pytest.fixture
def page(browser, live_server, transactional_db):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], errors


def log_in(page, username: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "secret-pass-1")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


def open_board(page, username: str) -> None:
    log_in(page, username)
    page.goto("/board/")
    page.wait_for_selector("#board .column")


def drag(page, card_selector: str, target_selector: str) -> None:
    """Drag like a person: press, move in steps, hold over the target until SortableJS has placed the card, release."""
    start, end = page.locator(card_selector).bounding_box(), page.locator(target_selector).bounding_box()
    x0, y0 = start["x"] + 8, start["y"] + start["height"] - 8
    x1, y1 = end["x"] + end["width"] / 2, end["y"] + min(40, end["height"] / 2)
    page.mouse.move(x0, y0)
    page.mouse.down()
    steps = 12
    for step in range(1, steps + 1):
        page.mouse.move(x0 + (x1 - x0) * step / steps, y0 + (y1 - y0) * step / steps)
        page.wait_for_timeout(40)
    for attempt in range(40):
        placed = page.evaluate(
            "([target]) => { const g = document.querySelector('.drag-ghost');"
            " return !!g && g.parentElement === document.querySelector(target); }",
            [target_selector],
        )
        if placed:
            break
        page.mouse.move(x1 + (attempt % 2) * 3, y1 + (attempt % 3))
        page.wait_for_timeout(60)
    page.mouse.up()


def column(deal_stage) -> str:
    return f'#board .cards[data-stage-id="{deal_stage.pk}"]'


def test_a_rep_logs_in_and_sees_their_board(page, org, board_pipeline):
    make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout", amount=Decimal("12000"))
    make_deal(owner=org.other_rep, pipeline=board_pipeline, title="Someone else's")

    open_board(page, "rep")

    card = page.locator(".deal-card", has_text="Acme rollout")
    assert card.is_visible()
    assert "$12,000" in card.inner_text()
    assert page.locator(".deal-card", has_text="Someone else's").count() == 0
    assert page.locator("#board .column").count() == 5
    assert page.locator(".dropzone.won").is_visible() and page.locator(".dropzone.lost").is_visible()


def test_dragging_a_card_to_the_next_stage_moves_the_deal(page, org, board_pipeline):
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    qualification = stage(board_pipeline, "Qualification")
    open_board(page, "rep")

    drag(page, f"#deal-{deal.pk}", column(qualification))

    page.locator("#toasts .toast", has_text="moved to Qualification").wait_for()
    deal.refresh_from_db()
    assert deal.stage == qualification
    assert page.locator(f"{column(qualification)} #deal-{deal.pk}").count() == 1
    assert page.locator(f"#col-head-{qualification.pk} .count").inner_text() == "1"


def test_the_required_fields_dialog_completes_the_move(page, org, board_pipeline):
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout", amount=Decimal("900"))
    contact = services.create_contact(actor=org.rep, first_name="Rita", last_name="Buyer")
    proposal = stage(board_pipeline, "Proposal")
    open_board(page, "rep")

    drag(page, f"#deal-{deal.pk}", column(proposal))

    dialog = page.locator("#move-dialog")
    dialog.locator("input[name=expected_close_date]").wait_for()
    assert dialog.locator("input[name=amount]").count() == 0  # only what is missing
    dialog.locator("input[name=expected_close_date]").fill("2027-03-31")
    dialog.locator("select[name=contact]").select_option(str(contact.pk))
    dialog.locator("button[type=submit]").click()

    page.locator("#toasts .toast", has_text="moved to Proposal").wait_for()
    assert not dialog.evaluate("d => d.open")
    deal.refresh_from_db()
    assert (deal.stage, str(deal.expected_close_date), deal.contact) == (proposal, "2027-03-31", contact)


def test_cancelling_the_dialog_puts_the_card_back(page, org, board_pipeline):
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    prospecting, discovery = stage(board_pipeline, "Prospecting"), stage(board_pipeline, "Discovery")
    open_board(page, "rep")

    drag(page, f"#deal-{deal.pk}", column(discovery))
    page.locator("#move-dialog input[name=amount]").wait_for()
    page.locator("#move-dialog button[data-close-dialog]").click()

    page.locator(f"{column(prospecting)} #deal-{deal.pk}").wait_for()
    deal.refresh_from_db()
    assert deal.stage == prospecting


def test_dropping_on_lost_asks_for_a_reason_and_loses_the_deal(page, org, board_pipeline):
    reason = make_lost_reason("Price")
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    open_board(page, "rep")

    drag(page, f"#deal-{deal.pk}", ".dropzone.lost")

    dialog = page.locator("#move-dialog")
    dialog.locator("select[name=lost_reason]").select_option(str(reason.pk))
    dialog.locator("textarea[name=lost_note]").fill("Went with a cheaper tool")
    dialog.locator("button[type=submit]").click()

    page.locator("#toasts .toast", has_text="is lost").wait_for()
    assert page.locator(f"#deal-{deal.pk}").count() == 0
    deal.refresh_from_db()
    assert (deal.status, deal.lost_reason, deal.lost_note) == ("lost", reason, "Went with a cheaper tool")


def test_the_move_to_control_works_with_the_keyboard_alone(page, org, board_pipeline):
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    qualification = stage(board_pipeline, "Qualification")
    open_board(page, "rep")

    page.focus(f"#deal-{deal.pk} h3 a")
    page.keyboard.press("Tab")  # the board's one Move button, now in this card
    assert page.evaluate("document.activeElement.closest('.deal-card').id") == f"deal-{deal.pk}"
    page.keyboard.press("Enter")
    dialog = page.locator("#move-to-dialog")
    assert dialog.locator("h2").inner_text() == "Move “Acme rollout” to"
    assert page.evaluate("document.activeElement.id") == "move-to-stage"
    assert page.evaluate("document.activeElement.value") == str(deal.stage_id)  # filled from the card
    page.keyboard.press("ArrowDown")  # Prospecting -> Qualification
    page.keyboard.press("Tab")  # Cancel
    page.keyboard.press("Tab")  # Move
    page.keyboard.press("Enter")

    page.locator(f"{column(qualification)} #deal-{deal.pk}").wait_for()
    page.locator(f"#col-head-{qualification.pk} .count", has_text="1").wait_for()
    assert not dialog.evaluate("d => d.open")
    deal.refresh_from_db()
    assert deal.stage == qualification
    # The new card carries the new version: a second move from the same dialog is not refused as a conflict.
    page.locator(f"#deal-{deal.pk} h3 a").focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.select_option("#move-to-stage", str(stage(board_pipeline, "Prospecting").pk))
    dialog.locator("button[type=submit]").click()
    page.locator("#toasts .toast", has_text="moved to Prospecting").wait_for()
    deal.refresh_from_db()
    assert deal.stage.name == "Prospecting"


def test_the_move_to_dialog_asks_for_a_stages_missing_fields_like_a_drop(page, org, board_pipeline):
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    discovery = stage(board_pipeline, "Discovery")
    open_board(page, "rep")

    page.hover(f"#deal-{deal.pk} h3 a")
    page.click(f"#deal-{deal.pk} .move-to")
    page.select_option("#move-to-stage", str(discovery.pk))
    page.click("#move-to-dialog button[type=submit]")
    page.locator("#move-dialog input[name=amount]").fill("4200")
    page.locator("#move-dialog button[type=submit]").click()

    page.locator(f"{column(discovery)} #deal-{deal.pk}").wait_for()
    deal.refresh_from_db()
    assert (deal.stage, deal.amount) == (discovery, Decimal("4200"))


def test_a_move_from_the_dialog_over_someone_elses_change_is_refused_and_the_card_refreshed(page, org, board_pipeline):
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    prospecting = stage(board_pipeline, "Prospecting")
    open_board(page, "rep")
    services.update_deal(deal=deal, actor=org.manager, amount=Decimal("777"))

    page.hover(f"#deal-{deal.pk} h3 a")
    page.click(f"#deal-{deal.pk} .move-to")
    page.select_option("#move-to-stage", str(stage(board_pipeline, "Qualification").pk))
    page.click("#move-to-dialog button[type=submit]")

    page.locator("#toasts .toast.error", has_text="changed by someone else").wait_for()
    page.locator(f"{column(prospecting)} #deal-{deal.pk}", has_text="$777").wait_for()
    assert page.locator(f"#deal-{deal.pk}").get_attribute("data-version") == "2"  # the fresh card's version
    deal.refresh_from_db()
    assert (deal.stage, deal.amount) == (prospecting, Decimal("777"))


def test_a_move_over_someone_elses_change_shows_a_message_and_keeps_their_change(page, org, board_pipeline):
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    prospecting = stage(board_pipeline, "Prospecting")
    open_board(page, "rep")
    services.update_deal(deal=deal, actor=org.manager, amount=Decimal("777"))

    drag(page, f"#deal-{deal.pk}", column(stage(board_pipeline, "Qualification")))

    page.locator("#toasts .toast.error", has_text="changed by someone else").wait_for()
    page.locator(f"{column(prospecting)} #deal-{deal.pk}", has_text="$777").wait_for()
    deal.refresh_from_db()
    assert (deal.stage, deal.amount) == (prospecting, Decimal("777"))


def test_a_card_someone_else_has_won_meanwhile_leaves_the_board_with_a_message(page, org, board_pipeline):
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    open_board(page, "rep")
    services.move_deal(deal=deal, stage=stage(board_pipeline, "Won"), actor=org.manager)

    drag(page, f"#deal-{deal.pk}", column(stage(board_pipeline, "Qualification")))

    page.locator("#toasts .toast.error", has_text="changed by someone else").wait_for()
    page.locator(f"#deal-{deal.pk}").wait_for(state="detached")
    deal.refresh_from_db()
    assert deal.status == "won"


def test_a_deal_past_its_rotting_days_is_marked_stale(page, org, board_pipeline):
    make_deal(owner=org.rep, pipeline=board_pipeline, title="Old", created_at=timezone.now() - timedelta(days=40))
    make_deal(owner=org.rep, pipeline=board_pipeline, title="Fresh")
    open_board(page, "rep")

    assert page.locator(".deal-card", has_text="Old").locator(".badge.stale").inner_text() == "Stale 40d"
    assert page.locator(".deal-card", has_text="Fresh").locator(".badge.stale").count() == 0


def test_a_deal_untouched_longer_than_its_rotting_days_is_red_and_a_touched_one_is_not(page, org, board_pipeline):
    # Both left alone for 40 days (the stages rot after 30); then a call on one of them, logged as done today.
    untouched = leave_untouched(make_deal(owner=org.rep, pipeline=board_pipeline, title="Forgotten"), days=40)
    touched = leave_untouched(make_deal(owner=org.rep, pipeline=board_pipeline, title="Called"), days=40)
    services.log_activity(actor=org.rep, kind="call", subject="Checked in", deal=touched)
    open_board(page, "rep")

    red = page.locator(f"#deal-{untouched.pk}")
    assert "is-inactive" in red.get_attribute("class")
    assert red.locator(".badge.rotting").inner_text() == "No activity for 40 days"
    assert red.evaluate("card => getComputedStyle(card).borderLeftColor") == "rgb(220, 38, 38)"
    calm = page.locator(f"#deal-{touched.pk}")
    assert "is-inactive" not in calm.get_attribute("class")
    assert calm.locator(".badge.rotting").count() == 0
    assert calm.evaluate("card => getComputedStyle(card).borderLeftColor") != "rgb(220, 38, 38)"

    # The deal page says it too.
    page.goto(f"/deals/{untouched.pk}/")
    assert page.locator("#deal-inactive").inner_text() == "No activity for 40 days"


def test_logging_an_activity_on_the_deal_page(page, org, board_pipeline):
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    log_in(page, "rep")
    page.goto(f"/deals/{deal.pk}/")

    page.select_option("#timeline-body select[name=kind]", "call")
    page.fill("#timeline-body input[name=subject]", "Discovery call with the CFO")
    page.click("#timeline-body button[type=submit]")

    page.locator(".timeline li", has_text="Discovery call with the CFO").wait_for()
    activity = Activity.objects.get(deal=deal)
    assert (activity.kind, activity.done_at is not None) == ("call", True)


def test_converting_a_lead_opens_its_new_deal(page, org, board_pipeline):
    lead = services.create_lead(actor=org.rep, first_name="Lee", last_name="Park", company="Initech", status="sql")
    log_in(page, "rep")
    page.goto(f"/leads/{lead.pk}/")

    page.fill("input[name=amount]", "15000")
    page.click("text=Convert to deal")

    page.wait_for_url("**/deals/*/")
    deal = Deal.objects.get()
    assert page.locator("h1").inner_text() == "Initech"
    assert (Lead.objects.get().deal, deal.amount) == (deal, Decimal("15000"))


def test_a_converted_leads_activities_show_on_its_deal_and_each_page_links_the_other(page, org, board_pipeline):
    lead = services.create_lead(actor=org.rep, first_name="Lee", last_name="Park", company="Initech", status="sql")
    services.log_activity(actor=org.rep, kind="call", subject="Qualifying call with Lee", lead=lead)
    log_in(page, "rep")
    page.goto(f"/leads/{lead.pk}/")

    page.click("text=Convert to deal")

    page.wait_for_url("**/deals/*/")
    page.locator(".timeline li", has_text="Qualifying call with Lee").wait_for()
    # The header names Lee Park twice: the deal's contact, then the lead it came from.
    page.click(f".record-head a[href='/leads/{lead.pk}/']")
    page.wait_for_url(f"**/leads/{lead.pk}/")
    assert page.locator(".timeline li", has_text="Qualifying call with Lee").count() == 1
    page.click("p:has-text('Converted into the deal') a")
    page.wait_for_url(f"**/deals/{Deal.objects.get().pk}/")


def test_a_long_column_loads_more_cards_as_it_scrolls_and_the_search_narrows_the_board(page, org, board_pipeline):
    start = timezone.now() - timedelta(days=5)
    for index in range(35):
        make_deal(owner=org.rep, pipeline=board_pipeline, title=f"Deal {index:02}", created_at=start)
    make_deal(owner=org.rep, pipeline=board_pipeline, title="Zebra account")
    open_board(page, "rep")
    cards = page.locator(column(stage(board_pipeline, "Prospecting"))).locator(".deal-card")
    assert cards.count() == 30

    page.locator(column(stage(board_pipeline, "Prospecting"))).evaluate("list => list.scrollTop = list.scrollHeight")

    page.wait_for_function("() => document.querySelectorAll('#board .deal-card').length === 36")
    page.fill("#id_q", "zebra")
    page.wait_for_function("() => document.querySelectorAll('#board .deal-card').length === 1")
    assert "q=zebra" in page.url


def csp_violations(page) -> list[str]:
    violations: list[str] = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return violations


def test_the_board_works_under_the_apps_strict_content_security_policy(page, org, board_pipeline, lost_reason):
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    violations = csp_violations(page)
    log_in(page, "rep")

    response = page.goto("/board/")
    assert response.headers["content-security-policy"] == settings.CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in settings.CONTENT_SECURITY_POLICY
    drag(page, f"#deal-{deal.pk}", ".dropzone.lost")
    page.locator("#move-dialog select[name=lost_reason]").select_option(str(lost_reason.pk))
    page.locator("#move-dialog button[type=submit]").click()

    page.locator("#toasts .toast", has_text="is lost").wait_for()
    deal.refresh_from_db()
    assert deal.status == "lost"
    assert violations == []
    # The policy is really in force: an inline script is refused.
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
        " document.body.append(s); }"
    )
    assert page.evaluate("() => window.ran") is None


def test_the_api_docs_render_under_the_content_security_policy(page, org):
    violations = csp_violations(page)

    response = page.goto("/api/docs/")

    assert "script-src 'self';" in response.headers["content-security-policy"]
    page.locator(".swagger-ui .info .title").wait_for()
    assert [text for text in violations if "script" in text] == []


def test_moving_from_the_deal_page_asks_for_a_missing_field_in_a_dialog(page, org, board_pipeline):
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    log_in(page, "rep")
    page.goto(f"/deals/{deal.pk}/")

    page.select_option("#move-stage", str(stage(board_pipeline, "Discovery").pk))
    page.click(".record-head button[type=submit]")
    page.locator("#move-dialog input[name=amount]").fill("4200")
    page.locator("#move-dialog button[type=submit]").click()

    page.locator(".stage-step.current", has_text="Discovery").wait_for()
    page.locator("#toasts .toast", has_text="moved to Discovery").wait_for()
    deal.refresh_from_db()
    assert (deal.stage.name, deal.amount) == ("Discovery", Decimal("4200"))
