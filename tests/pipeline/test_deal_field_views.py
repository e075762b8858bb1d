"""The deal page's one-field endpoint (`/deals/<id>/fields/<name>/`) and its Won/Lost redraw through the test client:
visibility, refused values, unknown fields, the version it carries, and pinned query counts."""

from decimal import Decimal

import pytest
from django.urls import reverse

from pipeline import services
from pipeline.models import Deal
from tests.factories import leave_untouched, make_deal, make_lost_reason, stage
from tests.queries import assert_query_count, capture_queries

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def rep_client(client, org):
    client.force_login(org.rep)
    return client


def field_url(deal, name: str) -> str:
    return reverse("pipeline:deal_field", args=[deal.pk, name])


def test_a_field_saves_alone_and_answers_its_display_and_the_header_with_the_new_version(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Acme", amount=Decimal("900"), source="Web")
    form = rep_client.get(field_url(deal, "amount"), **HTMX)
    assert form.status_code == 200 and b'name="amount"' in form.content and b'name="title"' not in form.content

    response = rep_client.post(field_url(deal, "amount"), {"amount": "12500", "version": deal.version}, **HTMX)

    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="deal-field-amount"' in body and "$12,500" in body
    assert 'hx-swap-oob="true"' in body and 'name="version" value="2"' in body
    deal.refresh_from_db()
    assert (deal.amount, deal.title, deal.source, deal.version) == (Decimal("12500"), "Acme", "Web", 2)


def test_an_idle_deal_says_so_on_its_page_until_a_save_touches_it(rep_client, org, pipeline):
    deal = leave_untouched(make_deal(owner=org.rep, pipeline=pipeline, title="Acme"), days=45)
    page = rep_client.get(reverse("pipeline:deal", args=[deal.pk])).content.decode()
    assert "No activity for 45 days" in page

    response = rep_client.post(field_url(deal, "title"), {"title": "Acme EU", "version": deal.version}, **HTMX)

    assert response.status_code == 200 and 'hx-swap-oob="true"' in response.content.decode()
    assert "No activity" not in response.content.decode()  # the header drawn again from the touched deal


def test_a_bad_value_is_refused_readably_and_nothing_is_written(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("900"))

    response = rep_client.post(field_url(deal, "amount"), {"amount": "lots", "version": deal.version})

    assert response.status_code == 400
    assert b'class="field-error"' in response.content and b"Enter a number." in response.content
    htmx = rep_client.post(field_url(deal, "expected_close_date"), {"expected_close_date": "31/31/2026"}, **HTMX)
    assert htmx.status_code == 200 and b'class="field-error"' in htmx.content
    deal.refresh_from_db()
    assert (deal.amount, deal.version) == (Decimal("900"), 1)


def test_an_unknown_field_is_not_found(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    for name in ("stage", "version", "lost_note", "nonsense"):
        assert rep_client.get(field_url(deal, name)).status_code == 404, name
        assert rep_client.post(field_url(deal, name), {name: "x", "version": 1}).status_code == 404, name


def test_a_deal_outside_the_users_visibility_is_not_found(rep_client, org, pipeline):
    deal = make_deal(owner=org.other_rep, pipeline=pipeline, title="Theirs")
    assert rep_client.get(field_url(deal, "title")).status_code == 404
    assert rep_client.get(field_url(deal, "title"), {"display": 1}).status_code == 404
    assert rep_client.post(field_url(deal, "title"), {"title": "Mine", "version": 1}).status_code == 404
    deal.refresh_from_db()
    assert deal.title == "Theirs"


def test_a_stale_version_keeps_the_typed_value_beside_the_current_one(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("900"))
    services.update_deal(deal=deal, actor=org.manager, amount=Decimal("777"))

    response = rep_client.post(field_url(deal, "amount"), {"amount": "5000", "version": 1}, **HTMX)

    body = response.content.decode()
    assert "$777" in body and 'value="5000"' in body and 'name="version" value="2"' in body
    assert "changed by someone else" in body
    deal.refresh_from_db()
    assert deal.amount == Decimal("777")


def test_won_and_lost_from_the_header_redraw_the_page_in_place(rep_client, org, pipeline):
    reason = make_lost_reason("Price")
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    deal_url = reverse("pipeline:deal", args=[deal.pk])
    page = rep_client.get(deal_url).content.decode()
    assert 'data-close-as="won"' in page and 'data-close-as="lost"' in page
    post = {"next": deal_url, "redraw": "1", "version": deal.version}
    move_url = reverse("pipeline:deal_move", args=[deal.pk])

    asked = rep_client.post(move_url, {**post, "stage": stage(pipeline, "Lost").pk}, **HTMX)
    assert asked["HX-Retarget"] == "#move-dialog-body" and b'name="redraw"' in asked.content
    refused = rep_client.post(move_url, {**post, "stage": stage(pipeline, "Lost").pk, "entry": "1"}, **HTMX)
    assert refused["HX-Retarget"] == "#move-dialog-body"
    lost = rep_client.post(
        move_url, {**post, "stage": stage(pipeline, "Lost").pk, "entry": "1", "lost_reason": reason.pk}, **HTMX
    )

    assert lost["HX-Retarget"] == "#deal-page" and "HX-Redirect" not in lost
    body = lost.content.decode()
    assert 'id="deal-page"' in body and "is lost" in body and 'data-close-as="won"' not in body
    deal.refresh_from_db()
    assert deal.status == "lost"


def test_the_deal_page_and_the_field_endpoint_make_a_pinned_number_of_queries(rep_client, org, pipeline):
    # Each count is asserted before the next request: Django clears its query log when a request starts.
    deal = make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("900"))
    rep_client.get(reverse("pipeline:deal", args=[deal.pk]))  # warm the session and caches
    with capture_queries() as page:
        rep_client.get(reverse("pipeline:deal", args=[deal.pk]))
    assert_query_count(page, exactly=11)
    with capture_queries() as form:
        rep_client.get(field_url(deal, "amount"), **HTMX)
    assert_query_count(form, exactly=4)
    with capture_queries() as save:
        rep_client.post(field_url(deal, "amount"), {"amount": "1000", "version": deal.version}, **HTMX)
    assert_query_count(save, exactly=15)  # the write reads back the last touch its triggers stamped

    # More history, changes and activities on the deal: the page still makes the same queries.
    for amount in ("1100", "1200"):
        rep_client.post(field_url(deal, "amount"), {"amount": amount, "version": Deal.objects.get().version}, **HTMX)
    services.log_activity(actor=org.rep, kind="call", subject="Call", deal=deal)
    move_url = reverse("pipeline:deal_move", args=[deal.pk])
    rep_client.post(move_url, {"stage": stage(pipeline, "Qualification").pk, "next": "/", "redraw": "1"}, **HTMX)
    assert Deal.objects.get().stage.name == "Qualification"
    with capture_queries() as busier:
        rep_client.get(reverse("pipeline:deal", args=[deal.pk]))
    assert_query_count(busier, exactly=11)


def test_a_save_over_someone_elses_change_to_another_field_is_no_conflict(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Acme", amount=Decimal("900"))
    form = rep_client.get(field_url(deal, "amount"), **HTMX).content.decode()
    assert 'name="seen_amount" value="900' in form
    services.update_deal(deal=deal, actor=org.manager, title="Acme, phase 2")

    response = rep_client.post(
        field_url(deal, "amount"), {"amount": "5000", "version": 1, "seen_amount": "900.00"}, **HTMX
    )

    assert b"changed by someone else" not in response.content
    deal.refresh_from_db()
    assert (deal.title, deal.amount, deal.version) == ("Acme, phase 2", Decimal("5000"), 3)
