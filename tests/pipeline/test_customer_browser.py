"""The organization and contact pages in a real browser: create an organization, add a contact at it, see its deals'
totals and open one; and the pages at a phone's 390 px, in one column with nothing wider than the screen."""

import os
from decimal import Decimal

import pytest

from pipeline import services
from pipeline.models import Contact, Organization
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


def test_creating_an_organization_adding_a_contact_and_opening_its_deal(page, org, board_pipeline):  # noqa: F811
    violations = csp_violations(page)
    log_in(page, "rep")
    page.click("nav >> text=Organizations")
    page.click("text=+ New organization")
    page.fill("#id_name", "Acme Rollouts")
    page.fill("#id_website", "https://acme.test")
    page.click("button:has-text('Create organization')")
    page.locator("h1", has_text="Acme Rollouts").wait_for()
    acme = Organization.objects.get()
    assert acme.owner == org.rep

    page.click("text=+ Add contact")
    assert page.locator("#id_organization").input_value() == str(acme.pk)
    page.fill("#id_first_name", "Ann")
    page.fill("#id_last_name", "Lee")
    page.fill("#id_email", "nope")
    # Past the browser's own check, to the server's: the field says what is wrong, and nothing is written.
    page.evaluate("() => document.querySelector('#id_email').closest('form').noValidate = true")
    page.click("button:has-text('Create contact')")
    page.locator(".field-error", has_text="valid email").wait_for()
    assert not Contact.objects.exists()
    page.fill("#id_email", "ann@acme.test")
    page.click("button:has-text('Create contact')")
    page.locator("h1", has_text="Ann Lee").wait_for()
    lee = Contact.objects.get()
    assert lee.organization == acme

    rollout = make_deal(
        owner=org.rep, pipeline=board_pipeline, organization=acme, contact=lee, title="Rollout", amount=Decimal("4000")
    )
    make_deal(owner=org.rep, pipeline=board_pipeline, organization=acme, title="Pilot", amount=Decimal("1500.50"))
    signed = make_qualified_deal(owner=org.rep, pipeline=board_pipeline, organization=acme, amount=Decimal("9000"))
    services.move_deal(deal=signed, actor=org.rep, stage=stage(board_pipeline, "Won"))
    page.click(f"a[href='/organizations/{acme.pk}/']")
    assert page.locator(".open-amount").inner_text().startswith("$5,500.50")
    assert page.locator(".won-amount").inner_text().startswith("$9,000")
    assert page.locator(".lost-amount").inner_text().startswith("$0")
    page.locator(".people", has_text="Ann Lee").wait_for()

    page.click("a:has-text('Rollout') >> nth=0")
    page.wait_for_url(f"**/deals/{rollout.pk}/")
    page.click(f"#deal-{rollout.pk} a[href='/organizations/{acme.pk}/']")
    page.wait_for_url(f"**/organizations/{acme.pk}/")

    services.create_organization(actor=org.rep, name="Zebra Freight")
    page.click("nav >> text=Organizations")
    rows = page.locator("#organization-results tbody tr")
    assert rows.count() == 2
    page.fill("#id_q", "zebra")
    page.wait_for_function("() => document.querySelectorAll('#organization-results tbody tr').length === 1")
    assert "Zebra Freight" in rows.inner_text() and "q=zebra" in page.url
    assert violations == []


def overflow(tab) -> int:
    """How many pixels the page is wider than the window (0 when nothing sticks out)."""
    return tab.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


def test_the_customer_pages_fit_a_phone_in_one_column(browser, live_server, org, board_pipeline):  # noqa: F811
    acme = services.create_organization(
        actor=org.rep, name="Acme Incorporated International Holdings", industry="Retail", website="https://acme.test"
    )
    lee = services.create_contact(
        actor=org.rep, first_name="Ann", last_name="Lee", email="ann.lee.long.address@acme.test", organization=acme
    )
    make_deal(owner=org.rep, pipeline=board_pipeline, organization=acme, contact=lee, amount=Decimal("123456789"))
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, base_url=live_server.url, has_touch=True, is_mobile=True
    )
    phone = context.new_page()
    try:
        log_in(phone, "rep")
        for url in ["/organizations/", f"/organizations/{acme.pk}/", "/contacts/", f"/contacts/{lee.pk}/"]:
            phone.goto(url)
            assert overflow(phone) <= 0, url
        phone.goto(f"/organizations/{acme.pk}/")
        totals, contacts = phone.locator(".customer-totals"), phone.locator(".people")
        # One column: the contacts come below the deals, not beside them.
        assert contacts.bounding_box()["y"] > totals.bounding_box()["y"] + totals.bounding_box()["height"]
        phone.click("[data-menu-toggle]")  # on a phone the navigation is behind the menu button
        assert phone.locator("nav >> text=Contacts").is_visible()
    finally:
        context.close()
