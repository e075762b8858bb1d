"""`Deal.search_text` (pipeline.search_text): what the deal search reads is, after every kind of write, the deal's
title, external id, organization name and contact names as the records hold them now, computed again here in Python."""

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from pipeline import search_text, selectors, services
from pipeline.models import Deal
from tests.factories import make_deal


def _expected(deal: Deal) -> str:
    deal = Deal.objects.select_related("organization", "contact").get(pk=deal.pk)
    contact = deal.contact
    parts = [
        deal.title,
        deal.external_id,
        deal.organization.name if deal.organization else None,
        contact.first_name if contact else None,
        contact.last_name if contact else None,
    ]
    return "\n".join(part for part in parts if part is not None)


def _stored(deal: Deal) -> str:
    return Deal.objects.values_list("search_text", flat=True).get(pk=deal.pk)


def _assert_every_deal_current() -> None:
    for deal in Deal.objects.all():
        assert _stored(deal) == _expected(deal), deal.title
    with connection.cursor() as cursor:
        assert search_text.restamp_search_text(cursor) == 0  # nothing left for the back-fill to correct


@pytest.fixture
def customers(org):
    acme = services.create_organization(actor=org.rep, name="Acme Corp")
    initech = services.create_organization(actor=org.rep, name="Initech")
    walker = services.create_contact(actor=org.rep, first_name="Alan", last_name="Walker", organization=acme)
    return acme, initech, walker


@pytest.mark.django_db
def test_a_new_deal_carries_its_parts_and_the_instance_reads_them_back(org, pipeline, customers):
    acme, _initech, walker = customers
    deal = services.create_deal(
        actor=org.rep, title="Renewal", pipeline=pipeline, organization=acme, contact=walker, external_id="X-1"
    )
    assert deal.search_text == _stored(deal) == "Renewal\nX-1\nAcme Corp\nAlan\nWalker"
    bare = make_deal(owner=org.rep, pipeline=pipeline, title="Bare")
    assert _stored(bare) == "Bare"
    _assert_every_deal_current()


@pytest.mark.django_db
def test_edits_of_the_deal_and_renames_of_its_customers_rewrite_it(org, pipeline, customers):
    acme, initech, walker = customers
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Renewal", organization=acme, contact=walker)
    other = make_deal(owner=org.rep, pipeline=pipeline, title="Other", organization=acme)
    services.update_deal(deal=deal, actor=org.rep, title="Expansion", organization=initech, external_id="E-9")
    assert _stored(deal) == "Expansion\nE-9\nInitech\nAlan\nWalker"

    services.update_organization(organization=acme, actor=org.rep, name="Acme Robotics")
    services.update_contact(contact=walker, actor=org.rep, last_name="Walken")
    assert _stored(other) == "Other\nAcme Robotics"
    assert _stored(deal) == "Expansion\nE-9\nInitech\nAlan\nWalken"
    assert set(selectors.search_deals(Deal.objects.all(), ["robotics"])) == {other}
    assert set(selectors.search_deals(Deal.objects.all(), ["walken"])) == {deal}
    assert not selectors.search_deals(Deal.objects.all(), ["walker"]).exists()
    _assert_every_deal_current()


@pytest.mark.django_db
def test_a_stale_copy_saved_after_a_rename_keeps_the_new_name(org, pipeline, customers):
    acme, _initech, _walker = customers
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Renewal", organization=acme)
    stale = Deal.objects.get(pk=deal.pk)  # read before the rename: it holds the old text
    services.update_organization(organization=acme, actor=org.rep, name="Acme Robotics")
    stale.amount = 500
    stale.save()
    assert _stored(deal) == "Renewal\nAcme Robotics"


@pytest.mark.django_db
def test_a_raw_sql_write_of_the_text_is_corrected_and_a_raw_rename_is_followed(org, pipeline, customers):
    acme, _initech, _walker = customers
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Renewal", organization=acme)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE pipeline_deal SET search_text = 'nonsense' WHERE id = %s", [deal.pk])
        cursor.execute("UPDATE pipeline_organization SET name = 'Globex' WHERE id = %s", [acme.pk])
    assert _stored(deal) == "Renewal\nGlobex"
    _assert_every_deal_current()


@pytest.mark.django_db
def test_the_text_of_imported_deals_is_written_too(org, pipeline, tmp_path):
    path = tmp_path / "deals.csv"
    path.write_text(
        "external_id,title,stage,owner,organization,amount\n"
        f"I-1,First,Prospecting,{org.rep.username},Umbrella Corp,10\n"
        f"I-2,Second,Prospecting,{org.rep.username},,\n"
    )
    call_command("import_csv", "deals", str(path), "--create-missing")
    first = Deal.objects.get(external_id="I-1")
    assert _stored(first) == "First\nI-1\nUmbrella Corp"
    assert set(selectors.search_deals(Deal.objects.all(), ["umbrella"])) == {first}
    _assert_every_deal_current()


@pytest.mark.django_db
def test_restamp_rewrites_what_a_bulk_load_left_out_of_date(org, pipeline, customers):
    acme, _initech, _walker = customers
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Renewal", organization=acme)
    untouched = make_deal(owner=org.rep, pipeline=pipeline, title="Untouched")
    with transaction.atomic(), connection.cursor() as cursor:
        # The generator writes the text itself during a load: whatever it writes is taken as written.
        cursor.execute("SELECT set_config('pipeline.bulk_load', 'on', true)")
        cursor.execute(
            "INSERT INTO pipeline_deal (title, pipeline_id, stage_id, status, owner_id, currency, forecast_category,"
            " lost_note, source, created_at, updated_at, stage_entered_at, version, budget, authority, need,"
            " timeline, search_text) SELECT 'Loaded', pipeline_id, stage_id, status, owner_id, currency,"
            " forecast_category, '', '', now(), now(), now(), 1, budget, authority, need, timeline, 'as written'"
            " FROM pipeline_deal WHERE id = %s RETURNING id",
            [deal.pk],
        )
        (loaded,) = cursor.fetchone()
        cursor.execute("SELECT set_config('pipeline.bulk_load', 'off', true)")
        assert Deal.objects.values_list("search_text", flat=True).get(pk=loaded) == "as written"
        assert search_text.restamp_search_text(cursor, [loaded, untouched.pk]) == 1
    assert Deal.objects.values_list("search_text", flat=True).get(pk=loaded) == "Loaded"
    _assert_every_deal_current()
