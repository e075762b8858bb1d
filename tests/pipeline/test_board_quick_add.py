"""The quick add at the top of a board column (issue 17 item 11): a small form (title, amount, organization) that
creates a deal in the column's stage through `services.create_deal`, answered with the card and the column's totals."""

from decimal import Decimal

import pytest
from django.urls import reverse

from pipeline import services
from pipeline.models import Deal
from tests.factories import make_deal, stage

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def rep_client(client, org):
    client.force_login(org.rep)
    return client


def quick_add_url(pipeline, stage_name: str) -> str:
    return reverse("pipeline:board_quick_add", args=[pipeline.pk, stage(pipeline, stage_name).pk])


def test_every_column_offers_a_quick_add_that_falls_back_to_the_full_form(rep_client, pipeline):
    board = rep_client.get(reverse("pipeline:board")).content.decode()

    for name in ("Prospecting", "Qualification", "Discovery", "Proposal", "Negotiation"):
        column = stage(pipeline, name)
        full_form = f"{reverse('pipeline:deal_create', args=[pipeline.pk])}?stage={column.pk}"
        assert f'href="{full_form}" hx-get="{quick_add_url(pipeline, name)}"' in board
    assert quick_add_url(pipeline, "Won") not in board
    # Without JS the "+" opens the full form with the column's stage chosen.
    page = rep_client.get(
        f"{reverse('pipeline:deal_create', args=[pipeline.pk])}?stage={stage(pipeline, 'Proposal').pk}"
    )
    assert page.context["form"]["stage"].value() == str(stage(pipeline, "Proposal").pk)


def test_the_form_asks_for_a_title_an_amount_and_an_organization(rep_client, org, pipeline):
    mine = services.create_organization(actor=org.rep, name="Acme")
    services.create_organization(actor=org.other_rep, name="Not yours")

    response = rep_client.get(quick_add_url(pipeline, "Qualification"), **HTMX)

    assert response.status_code == 200
    form = response.context["form"]
    assert list(form.fields) == ["title", "amount", "organization"]
    assert [label for _, label in form.fields["organization"].choices] == ["No organization", "Acme"]
    assert mine.name in response.content.decode() and "Not yours" not in response.content.decode()


def test_a_quick_add_creates_the_deal_in_the_column_and_answers_with_its_card_and_totals(rep_client, org, pipeline):
    qualification = stage(pipeline, "Qualification")
    acme = services.create_organization(actor=org.rep, name="Acme")
    make_deal(owner=org.rep, pipeline=pipeline, stage=qualification, amount=Decimal("1000"))
    make_deal(owner=org.teammate, pipeline=pipeline, stage=qualification, amount=Decimal("50000"))  # not the rep's

    response = rep_client.post(
        quick_add_url(pipeline, "Qualification"),
        {"title": "Acme expansion", "amount": "2500", "organization": acme.pk},
        **HTMX,
    )

    assert response.status_code == 200
    deal = Deal.objects.get(title="Acme expansion")
    assert (deal.stage, deal.owner, deal.amount, deal.organization, deal.currency) == (
        qualification,
        org.rep,
        Decimal("2500"),
        acme,
        "USD",
    )
    assert deal.stage_changes.get().to_stage == qualification  # created through the service, with its history
    body = response.content.decode()
    assert f'hx-swap-oob="afterbegin:#cards-{qualification.pk}"><article class="deal-card" id="deal-{deal.pk}"' in body
    [header] = response.context["headers"]
    mine = Deal.objects.filter(owner=org.rep, stage=qualification)
    assert header.count == mine.count() == 2
    assert header.total == sum(d.amount for d in mine) == Decimal("3500")
    assert f'id="col-head-{qualification.pk}" hx-swap-oob="true"' in body
    assert "Created “Acme expansion” in Qualification." in body


def test_a_stage_with_a_required_field_refuses_at_that_field_and_writes_nothing(rep_client, pipeline):
    response = rep_client.post(quick_add_url(pipeline, "Discovery"), {"title": "No amount yet"}, **HTMX)

    assert response.status_code == 200
    assert response.context["form"].errors == {"amount": ["Amount is required to enter the stage “Discovery”."]}
    assert "has-error" in response.content.decode()
    assert not Deal.objects.exists()


def test_fields_the_quick_form_lacks_are_named_above_it_with_the_way_to_the_full_form(rep_client, pipeline):
    proposal = stage(pipeline, "Proposal")

    response = rep_client.post(quick_add_url(pipeline, "Proposal"), {"title": "Big one", "amount": "900"}, **HTMX)

    body = response.content.decode()
    errors = response.context["form"].non_field_errors()
    assert sorted(errors) == [
        "Contact is required to enter the stage “Proposal”.",
        "Expected close date is required to enter the stage “Proposal”.",
    ]
    assert f"{reverse('pipeline:deal_create', args=[proposal.pipeline_id])}?stage={proposal.pk}" in body
    assert not Deal.objects.exists()


def test_bad_input_is_named_per_field_and_never_a_server_error(rep_client, org, pipeline):
    theirs = services.create_organization(actor=org.other_rep, name="Not yours")

    response = rep_client.post(
        quick_add_url(pipeline, "Prospecting"),
        {"title": "", "amount": "-5", "organization": theirs.pk},
        **HTMX,
    )

    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"title", "amount", "organization"}
    assert not Deal.objects.exists()
    for payload in ({"amount": "lots"}, {"title": "x" * 5000}, {"organization": "'; drop"}):
        assert rep_client.post(quick_add_url(pipeline, "Prospecting"), payload, **HTMX).status_code == 200
    assert not Deal.objects.exists()


def test_a_closed_stage_another_pipelines_stage_or_a_typed_address_get_no_form(rep_client, pipeline, other_pipeline):
    url = reverse("pipeline:board_quick_add", args=[pipeline.pk, stage(pipeline, "Won").pk])
    assert rep_client.get(url, **HTMX).status_code == 404
    url = reverse("pipeline:board_quick_add", args=[pipeline.pk, stage(other_pipeline, "Prospecting").pk])
    assert rep_client.post(url, {"title": "x"}, **HTMX).status_code == 404

    response = rep_client.get(quick_add_url(pipeline, "Proposal"))  # no htmx: the full form
    assert response.status_code == 302
    assert response["Location"].endswith(f"?stage={stage(pipeline, 'Proposal').pk}")
    assert not Deal.objects.exists()


def test_a_deal_the_filters_hide_is_created_and_said_so_without_a_card(rep_client, org, pipeline):
    response = rep_client.post(quick_add_url(pipeline, "Prospecting"), {"title": "Globex pilot", "q": "acme"}, **HTMX)

    assert Deal.objects.filter(title="Globex pilot").exists()
    assert response.context["card"] is None
    assert "The board’s filters hide it." in response.content.decode()
    assert response.context["headers"][0].count == 0  # the column shows only what matches "acme"


def test_without_htmx_a_quick_add_goes_back_to_the_board_or_to_the_full_form_with_the_reason(rep_client, pipeline):
    refused = rep_client.post(quick_add_url(pipeline, "Discovery"), {"title": "No amount yet"}, follow=True)

    assert refused.redirect_chain[-1][0].endswith(f"?stage={stage(pipeline, 'Discovery').pk}")
    assert "Amount is required to enter the stage “Discovery”." in refused.content.decode()
    assert not Deal.objects.exists()

    added = rep_client.post(quick_add_url(pipeline, "Discovery"), {"title": "Sized", "amount": "10"})

    assert added.status_code == 302 and added["Location"] == reverse("pipeline:board_pipeline", args=[pipeline.pk])
    assert Deal.objects.get().stage == stage(pipeline, "Discovery")
