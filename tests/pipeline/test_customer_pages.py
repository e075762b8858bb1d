"""The organization and contact pages (issue 17 item 9): lists with search and pages, a customer's deals with their
totals, contacts, activities and timeline; creating and editing through the services; visibility (SPEC §2)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEntry
from pipeline import services
from pipeline.models import Contact, Organization
from pipeline.selectors import audit_trail
from tests.factories import make_deal, make_qualified_deal, stage
from tests.queries import CapturedQueries, assert_query_count, capture_queries

pytestmark = pytest.mark.django_db


@pytest.fixture
def rep_client(client, org):
    client.force_login(org.rep)
    return client


def won(deal, pipeline, actor):
    return services.move_deal(deal=deal, actor=actor, stage=stage(pipeline, "Won"))


def lost(deal, pipeline, actor, reason):
    return services.move_deal(deal=deal, actor=actor, stage=stage(pipeline, "Lost"), lost_reason=reason)


def page_queries(client, url) -> CapturedQueries:
    with capture_queries() as queries:
        response = client.get(url)
    assert response.status_code == 200
    return queries


# --- Navigation and visibility --------------------------------------------------------------------------------------


def test_the_pages_send_anonymous_visitors_to_the_login_page(client, org):
    organization = services.create_organization(actor=org.rep, name="Acme")
    contact = services.create_contact(actor=org.rep, last_name="Lee")
    for url in [
        reverse("pipeline:organizations"),
        reverse("pipeline:organization", args=[organization.pk]),
        reverse("pipeline:organization_create"),
        reverse("pipeline:organization_edit", args=[organization.pk]),
        reverse("pipeline:contacts"),
        reverse("pipeline:contact", args=[contact.pk]),
        reverse("pipeline:contact_create"),
        reverse("pipeline:contact_edit", args=[contact.pk]),
    ]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url


def test_the_top_navigation_links_organizations_and_contacts(rep_client):
    page = rep_client.get(reverse("pipeline:organizations")).content.decode()

    assert 'href="/organizations/" aria-current="page"' in page
    assert 'href="/contacts/"' in page


@pytest.mark.parametrize("who", ["other_rep", "other_manager", "idle_manager"])
def test_organizations_and_contacts_outside_a_users_teams_are_not_found(client, org, pipeline, who):
    organization = services.create_organization(actor=org.rep, name="Acme")
    contact = services.create_contact(actor=org.rep, last_name="Lee", organization=organization)
    client.force_login(getattr(org, who))

    for url in [
        reverse("pipeline:organization", args=[organization.pk]),
        reverse("pipeline:organization_edit", args=[organization.pk]),
        reverse("pipeline:contact", args=[contact.pk]),
        reverse("pipeline:contact_edit", args=[contact.pk]),
    ]:
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("pipeline:organization_edit", args=[organization.pk]), {"name": "X"}).status_code == 404
    assert client.post(reverse("pipeline:contact_edit", args=[contact.pk]), {"last_name": "X"}).status_code == 404
    assert "Acme" not in client.get(reverse("pipeline:organizations")).content.decode()
    assert "Lee" not in client.get(reverse("pipeline:contacts")).content.decode()
    organization.refresh_from_db()
    assert organization.name == "Acme"


def test_each_role_sees_the_customers_of_the_records_it_may_see(client, org, pipeline):
    services.create_organization(actor=org.rep, name="Mine Inc")
    services.create_organization(actor=org.teammate, name="Teammate Ltd")
    theirs = services.create_organization(actor=org.other_rep, name="Shared Corp")
    # A deal of the rep's at another team's organization makes that organization visible to the rep.
    make_deal(owner=org.rep, pipeline=pipeline, organization=theirs)

    def names(user):
        client.force_login(user)
        return [o.name for o in client.get(reverse("pipeline:organizations")).context["page"].object_list]

    assert names(org.rep) == ["Mine Inc", "Shared Corp"]
    assert names(org.manager) == ["Mine Inc", "Shared Corp", "Teammate Ltd"]
    assert names(org.other_manager) == ["Shared Corp"]
    assert names(org.admin) == ["Mine Inc", "Shared Corp", "Teammate Ltd"]
    with override_settings(REP_VISIBILITY="team"):
        assert names(org.rep) == ["Mine Inc", "Shared Corp", "Teammate Ltd"]


def test_with_team_visibility_a_rep_sees_a_teammates_organization_but_cannot_edit_it(rep_client, org):
    theirs = services.create_organization(actor=org.teammate, name="Teammate Ltd")
    with override_settings(REP_VISIBILITY="team"):
        page = rep_client.get(reverse("pipeline:organization", args=[theirs.pk]))
        edit = rep_client.post(reverse("pipeline:organization_edit", args=[theirs.pk]), {"name": "Mine now"})

    assert page.status_code == 200 and not page.context["can_edit"]
    assert reverse("pipeline:organization_edit", args=[theirs.pk]) not in page.content.decode()
    assert edit.status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == "Teammate Ltd"


# --- The lists ------------------------------------------------------------------------------------------------------


def test_the_organization_list_searches_by_name_and_pages_by_fifty(rep_client, org, pipeline):
    for index in range(55):
        services.create_organization(actor=org.rep, name=f"Company {index:02d}")
    services.create_organization(actor=org.rep, name="Zebra Logistics")

    first = rep_client.get(reverse("pipeline:organizations"))
    second = rep_client.get(reverse("pipeline:organizations"), {"page": 2})
    found = rep_client.get(
        reverse("pipeline:organizations"), {"q": "zebra"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="organization-results"
    )

    assert len(first.context["page"].object_list) == 50
    assert [o.name for o in second.context["page"].object_list] == [
        *(f"Company {i}" for i in range(50, 55)),
        "Zebra Logistics",
    ]
    assert [o.name for o in found.context["page"].object_list] == ["Zebra Logistics"]
    assert found.content.decode().startswith('<div id="organization-results"')
    assert "<html" not in found.content.decode()


def test_the_organization_list_shows_the_open_deals_the_user_may_see(client, org, pipeline):
    acme = services.create_organization(actor=org.rep, name="Acme")
    make_deal(owner=org.rep, pipeline=pipeline, organization=acme, amount=Decimal("1000"))
    make_deal(owner=org.rep, pipeline=pipeline, organization=acme, amount=Decimal("250.50"))
    won(make_qualified_deal(owner=org.rep, pipeline=pipeline, organization=acme), pipeline, org.rep)
    make_deal(owner=org.other_rep, pipeline=pipeline, organization=acme, amount=Decimal("9999"))

    client.force_login(org.rep)
    [row] = client.get(reverse("pipeline:organizations")).context["page"].object_list
    client.force_login(org.admin)
    [all_rows] = client.get(reverse("pipeline:organizations")).context["page"].object_list

    assert (row.open_deal_count, row.open_deal_amount) == (2, Decimal("1000") + Decimal("250.50"))
    assert (all_rows.open_deal_count, all_rows.open_deal_amount) == (3, Decimal("1000") + Decimal("250.50") + 9999)


def test_the_contact_list_searches_by_name_or_email(rep_client, org):
    acme = services.create_organization(actor=org.rep, name="Acme")
    services.create_contact(actor=org.rep, first_name="Ada", last_name="Lovelace", organization=acme)
    services.create_contact(actor=org.rep, last_name="Hopper", email="grace@navy.test")
    services.create_contact(actor=org.rep, last_name="Turing")

    def names(q):
        response = rep_client.get(reverse("pipeline:contacts"), {"q": q})
        return [str(c) for c in response.context["page"].object_list]

    assert names("") == ["Hopper", "Ada Lovelace", "Turing"]
    assert names("ada") == ["Ada Lovelace"]
    assert names("NAVY") == ["Hopper"]
    assert f'href="/organizations/{acme.pk}/"' in rep_client.get(reverse("pipeline:contacts")).content.decode()


def test_a_contact_shows_their_organization_only_when_the_user_may_see_it(rep_client, org, pipeline):
    hidden = services.create_organization(actor=org.other_rep, name="Hidden Corp")
    contact = services.create_contact(actor=org.other_rep, last_name="Lee", organization=hidden)
    # The rep sees the contact through their own deal, not the organization: neither its name nor its link shows.
    make_deal(owner=org.rep, pipeline=pipeline, contact=contact)

    listed = rep_client.get(reverse("pipeline:contacts")).content.decode()
    page = rep_client.get(reverse("pipeline:contact", args=[contact.pk])).content.decode()

    assert "Lee" in listed and "Lee" in page
    assert "Hidden Corp" not in listed and "Hidden Corp" not in page


def _list_queries(client, name):
    return page_queries(client, reverse(name))


def test_the_lists_make_the_same_number_of_queries_for_few_and_many_rows(client, org, pipeline):
    client.force_login(org.manager)
    acme = services.create_organization(actor=org.rep, name="Acme")
    services.create_contact(actor=org.rep, last_name="Lee", organization=acme)
    make_deal(owner=org.rep, pipeline=pipeline, organization=acme, amount=100)
    few = {name: _list_queries(client, name) for name in ("pipeline:organizations", "pipeline:contacts")}

    for index in range(30):
        owner = [org.rep, org.teammate][index % 2]
        company = services.create_organization(actor=owner, name=f"Company {index}")
        services.create_contact(actor=owner, last_name=f"Person {index}", organization=company)
        make_deal(owner=owner, pipeline=pipeline, organization=company, amount=index)
    many = {name: _list_queries(client, name) for name in ("pipeline:organizations", "pipeline:contacts")}

    # session, user, count, rows
    assert_query_count(few["pipeline:organizations"], many["pipeline:organizations"], exactly=4)
    assert_query_count(few["pipeline:contacts"], many["pipeline:contacts"], exactly=4)


# --- An organization's and a contact's page -------------------------------------------------------------------------


def test_an_organizations_page_shows_its_deals_with_totals_contacts_activities_and_timeline(
    rep_client, org, pipeline, lost_reason
):
    acme = services.create_organization(actor=org.rep, name="Acme", industry="Retail")
    lee = services.create_contact(actor=org.rep, first_name="Ann", last_name="Lee", organization=acme)
    opened = [
        make_deal(owner=org.rep, pipeline=pipeline, organization=acme, title="Rollout", amount=Decimal("1200.50")),
        make_deal(owner=org.rep, pipeline=pipeline, organization=acme, title="Pilot", amount=Decimal("300")),
    ]
    won_deal = won(
        make_qualified_deal(owner=org.rep, pipeline=pipeline, organization=acme, amount=Decimal("5000")),
        pipeline,
        org.rep,
    )
    lost_deal = lost(
        make_qualified_deal(owner=org.rep, pipeline=pipeline, organization=acme, amount=Decimal("700")),
        pipeline,
        org.rep,
        lost_reason,
    )
    # Another team's deal at the same organization is neither listed nor counted for the rep.
    make_deal(owner=org.other_rep, pipeline=pipeline, organization=acme, title="Not yours", amount=Decimal("1"))
    soon = timezone.now() + timedelta(days=1)
    call = services.log_activity(actor=org.rep, kind="call", subject="Call Ann", deal=opened[0], due_at=soon)
    note = services.log_activity(actor=org.rep, kind="note", subject="Met at the fair", deal=opened[1])
    lead = services.create_lead(actor=org.rep, last_name="Lead person", organization=acme)
    lead_email = services.log_activity(actor=org.rep, kind="email", subject="Intro mail", lead=lead)

    response = rep_client.get(reverse("pipeline:organization", args=[acme.pk]))
    record, content = response.context["record"], response.content.decode()

    visible = [*opened, won_deal, lost_deal]
    [totals] = record.totals
    assert (totals.open_count, totals.open_amount) == (2, sum(d.amount for d in opened))
    assert (totals.won_count, totals.won_amount) == (1, won_deal.amount)
    assert (totals.lost_count, totals.lost_amount) == (1, lost_deal.amount)
    assert "$1,500.50" in content and "$5,000" in content and "$700" in content
    assert {d.pk for d in record.open_deals} == {d.pk for d in opened}
    assert [d.pk for d in record.closed_deals] == [lost_deal.pk, won_deal.pk]
    assert "Not yours" not in content
    assert [c.pk for c in response.context["contacts"]] == [lee.pk]
    assert reverse("pipeline:contact", args=[lee.pk]) in content
    assert [a.pk for a in record.planned] == [call.pk]
    timeline_activities = [e["activity"].pk for e in record.timeline if e["kind"] == "activity"]
    assert timeline_activities == [lead_email.pk, note.pk]
    assert {e["deal"].pk for e in record.timeline if e["kind"] == "created"} == {d.pk for d in visible}
    assert [e["kind"] for e in record.timeline if e["kind"] in ("won", "lost")] == ["lost", "won"]
    assert [e["at"] for e in record.timeline] == sorted((e["at"] for e in record.timeline), reverse=True)
    for deal in visible:
        assert reverse("pipeline:deal", args=[deal.pk]) in content
    assert response.context["can_edit"]


def test_totals_in_different_currencies_are_never_added_up(rep_client, org, pipeline):
    acme = services.create_organization(actor=org.rep, name="Acme")
    make_deal(owner=org.rep, pipeline=pipeline, organization=acme, amount=Decimal("100"), currency="USD")
    make_deal(owner=org.rep, pipeline=pipeline, organization=acme, amount=Decimal("200"), currency="USD")
    make_deal(owner=org.rep, pipeline=pipeline, organization=acme, amount=Decimal("50"), currency="EUR")

    record = rep_client.get(reverse("pipeline:organization", args=[acme.pk])).context["record"]

    assert [(t.currency, t.open_count, t.open_amount) for t in record.totals] == [
        ("USD", 2, Decimal("300")),
        ("EUR", 1, Decimal("50")),
    ]


def test_a_contacts_page_shows_their_deals_organization_and_activities(rep_client, org, pipeline):
    acme = services.create_organization(actor=org.rep, name="Acme")
    lee = services.create_contact(actor=org.rep, last_name="Lee", organization=acme, email="lee@acme.test")
    theirs = make_deal(owner=org.rep, pipeline=pipeline, contact=lee, organization=acme, amount=Decimal("800"))
    make_deal(owner=org.rep, pipeline=pipeline, organization=acme, title="Someone else's deal")
    services.log_activity(actor=org.rep, kind="call", subject="Call Lee", deal=theirs)

    response = rep_client.get(reverse("pipeline:contact", args=[lee.pk]))
    record, content = response.context["record"], response.content.decode()

    assert [d.pk for d in record.open_deals] == [theirs.pk]
    assert [(t.open_count, t.open_amount) for t in record.totals] == [(1, Decimal("800"))]
    assert "Someone else&#x27;s deal" not in content and "Someone else's deal" not in content
    assert reverse("pipeline:organization", args=[acme.pk]) in content
    assert "Call Lee" in content and "lee@acme.test" in content


def _fill_customer(org, pipeline, acme, lee, lost_reason, count):
    for index in range(count):
        owner = [org.rep, org.teammate][index % 2]
        deal = make_qualified_deal(owner=owner, pipeline=pipeline, organization=acme, contact=lee)
        services.log_activity(actor=owner, kind="call", subject="c", deal=deal, due_at=timezone.now())
        services.log_activity(actor=owner, kind="note", subject="n", deal=deal)
        if index % 3 == 1:
            won(deal, pipeline, owner)
        elif index % 3 == 2:
            lost(deal, pipeline, owner, lost_reason)
        services.create_contact(actor=owner, last_name=f"Person {index}", organization=acme)
        lead = services.create_lead(actor=owner, last_name=f"Lead {index}", organization=acme, contact=lee)
        services.log_activity(actor=owner, kind="email", subject="e", lead=lead)


def test_the_customer_pages_make_the_same_number_of_queries_for_few_and_many_rows(client, org, pipeline, lost_reason):
    client.force_login(org.manager)
    acme = services.create_organization(actor=org.rep, name="Acme")
    lee = services.create_contact(actor=org.rep, last_name="Lee", organization=acme)
    urls = [reverse("pipeline:organization", args=[acme.pk]), reverse("pipeline:contact", args=[lee.pk])]
    _fill_customer(org, pipeline, acme, lee, lost_reason, 3)
    few = [page_queries(client, url) for url in urls]

    _fill_customer(org, pipeline, acme, lee, lost_reason, 20)
    many = [page_queries(client, url) for url in urls]

    # session, user, the record, open deals, closed deals, deal ids, lead ids, planned, done, totals, may edit (and
    # the organization's contacts)
    assert_query_count(few[0], many[0], exactly=12)
    assert_query_count(few[1], many[1], exactly=11)


# --- Creating and editing -------------------------------------------------------------------------------------------


def test_creating_an_organization_goes_through_the_service_and_is_audited(rep_client, org):
    assert b'name="name"' in rep_client.get(reverse("pipeline:organization_create")).content

    response = rep_client.post(
        reverse("pipeline:organization_create"),
        {"name": "Acme", "website": "https://acme.test", "industry": "Retail", "owner": org.rep.pk},
    )

    acme = Organization.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("pipeline:organization", args=[acme.pk])
    assert (acme.name, acme.website, acme.industry, acme.owner) == ("Acme", "https://acme.test", "Retail", org.rep)
    [entry] = audit_trail(instance=acme)
    assert (entry.action, entry.actor) == ("created", org.rep)


def test_a_bad_organization_shows_each_bad_field_and_writes_nothing(rep_client, org):
    response = rep_client.post(
        reverse("pipeline:organization_create"),
        {"name": "", "website": "javascript:alert(1)", "industry": "x" * 101, "owner": org.other_rep.pk},
    )

    form = response.context["form"]
    assert response.status_code == 200
    assert set(form.errors) == {"name", "website", "industry", "owner"}
    content = response.content.decode()
    assert content.count('class="field-error"') >= 4 and "Enter a valid URL." in content
    assert not Organization.objects.exists() and not AuditEntry.objects.exists()


def test_editing_an_organization_saves_only_what_changed_and_is_audited(rep_client, org):
    acme = services.create_organization(actor=org.rep, name="Acme", industry="Retail")
    url = reverse("pipeline:organization_edit", args=[acme.pk])
    assert rep_client.get(url).context["form"].initial["name"] == "Acme"

    response = rep_client.post(url, {"name": "Acme Group", "website": "", "industry": "Retail", "owner": org.rep.pk})

    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.name == "Acme Group"
    assert audit_trail(instance=acme).first().changes == {"name": ["Acme", "Acme Group"]}


def test_a_bad_edit_of_an_organization_shows_the_field_and_changes_nothing(rep_client, org):
    acme = services.create_organization(actor=org.rep, name="Acme")
    url = reverse("pipeline:organization_edit", args=[acme.pk])

    response = rep_client.post(url, {"name": "", "website": "not a url", "owner": org.rep.pk})

    assert response.status_code == 200 and set(response.context["form"].errors) == {"name", "website"}
    acme.refresh_from_db()
    assert acme.name == "Acme" and audit_trail(instance=acme).count() == 1


def test_adding_a_contact_from_an_organization_page_prefills_it(rep_client, org):
    acme = services.create_organization(actor=org.rep, name="Acme")
    hidden = services.create_organization(actor=org.other_rep, name="Hidden")
    page = rep_client.get(reverse("pipeline:organization", args=[acme.pk])).content.decode()
    add_url = f"{reverse('pipeline:contact_create')}?organization={acme.pk}"
    assert add_url in page

    form = rep_client.get(add_url).context["form"]
    assert form.initial["organization"] == acme.pk
    assert (
        rep_client.get(f"{reverse('pipeline:contact_create')}?organization={hidden.pk}")
        .context["form"]
        .initial["organization"]
        is None
    )

    response = rep_client.post(
        add_url,
        {
            "first_name": "Ann",
            "last_name": "Lee",
            "email": "ann@acme.test",
            "organization": acme.pk,
            "owner": org.rep.pk,
        },
    )
    contact = Contact.objects.get()
    assert response["Location"] == reverse("pipeline:contact", args=[contact.pk])
    assert (contact.organization, contact.owner, contact.email) == (acme, org.rep, "ann@acme.test")
    assert [entry.action for entry in audit_trail(instance=contact)] == ["created"]


def test_a_bad_contact_shows_each_bad_field_and_writes_nothing(rep_client, org):
    hidden = services.create_organization(actor=org.other_rep, name="Hidden")

    response = rep_client.post(
        reverse("pipeline:contact_create"),
        {"last_name": "", "email": "not-an-email", "organization": hidden.pk, "owner": org.rep.pk},
    )

    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"last_name", "email", "organization"}
    assert not Contact.objects.exists()


def test_editing_a_contact_goes_through_the_service_and_is_audited(rep_client, org):
    lee = services.create_contact(actor=org.rep, last_name="Lee")
    url = reverse("pipeline:contact_edit", args=[lee.pk])

    bad = rep_client.post(url, {"last_name": "Lee", "email": "nope", "owner": org.rep.pk})
    good = rep_client.post(url, {"last_name": "Lee", "job_title": "CTO", "owner": org.rep.pk})

    assert bad.status_code == 200 and list(bad.context["form"].errors) == ["email"]
    assert good.status_code == 302
    lee.refresh_from_db()
    assert lee.job_title == "CTO" and lee.email == ""
    assert audit_trail(instance=lee).first().changes == {"job_title": ["", "CTO"]}


def test_editing_a_contact_at_an_organization_the_user_may_not_see_keeps_it(rep_client, org):
    hidden = services.create_organization(actor=org.other_rep, name="Hidden Corp")
    lee = services.create_contact(actor=org.rep, last_name="Lee", organization=hidden)
    url = reverse("pipeline:contact_edit", args=[lee.pk])

    form_page = rep_client.get(url)
    response = rep_client.post(url, {"last_name": "Lee", "phone": "555", "owner": org.rep.pk})

    assert "organization" not in form_page.context["form"].fields
    assert "Hidden Corp" not in form_page.content.decode()
    assert response.status_code == 302
    lee.refresh_from_db()
    assert (lee.phone, lee.organization) == ("555", hidden)


def test_garbage_input_never_causes_a_server_error_on_the_customer_pages(rep_client, org):
    from tests.pipeline.test_views import GARBAGE

    acme = services.create_organization(actor=org.rep, name="Acme")
    lee = services.create_contact(actor=org.rep, last_name="Lee")
    for url in [
        reverse("pipeline:organization_create"),
        reverse("pipeline:organization_edit", args=[acme.pk]),
        reverse("pipeline:contact_create"),
        reverse("pipeline:contact_edit", args=[lee.pk]),
    ]:
        assert rep_client.post(url, GARBAGE).status_code < 500, url
    for url in [reverse("pipeline:organizations"), reverse("pipeline:contacts")]:
        assert rep_client.get(url, {**GARBAGE, "page": "last"}).status_code < 500, url
    assert rep_client.get(reverse("pipeline:contact_create"), {"organization": "1' or 1=1"}).status_code == 200


# --- Links from the deal page and the board -------------------------------------------------------------------------


def test_the_deal_page_and_the_board_card_link_the_organization_and_contact(rep_client, org, pipeline):
    acme = services.create_organization(actor=org.rep, name="Acme")
    lee = services.create_contact(actor=org.rep, last_name="Lee", organization=acme)
    deal = make_deal(owner=org.rep, pipeline=pipeline, organization=acme, contact=lee)

    deal_page = rep_client.get(reverse("pipeline:deal", args=[deal.pk])).content.decode()
    board = rep_client.get(reverse("pipeline:board")).content.decode()

    assert f'href="/organizations/{acme.pk}/"' in deal_page and f'href="/contacts/{lee.pk}/"' in deal_page
    card = board[board.index(f'id="deal-{deal.pk}"') :]
    assert f'href="/organizations/{acme.pk}/"' in card[: card.index("</article>")]


def test_the_lead_page_and_the_inbox_link_the_organization_and_contact(rep_client, org, pipeline):
    acme = services.create_organization(actor=org.rep, name="Acme")
    lee = services.create_contact(actor=org.rep, last_name="Lee", organization=acme)
    lead = services.create_lead(actor=org.rep, last_name="Park", organization=acme, contact=lee)
    deal = make_deal(owner=org.rep, pipeline=pipeline, organization=acme)
    services.log_activity(actor=org.rep, kind="call", subject="Call", deal=deal, due_at=timezone.now())

    lead_page = rep_client.get(reverse("pipeline:lead", args=[lead.pk])).content.decode()
    inbox = rep_client.get(reverse("pipeline:activities")).content.decode()

    assert f'href="/organizations/{acme.pk}/"' in lead_page and f'href="/contacts/{lee.pk}/"' in lead_page
    assert f'href="/organizations/{acme.pk}/"' in inbox
