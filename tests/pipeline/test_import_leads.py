"""Importing leads: status stamps as the app would have set them, conversions, upserts, bad cells."""

import io
from datetime import UTC, datetime

import pytest

from pipeline import services
from pipeline.importing import ImportOptions, import_csv
from pipeline.models import Lead, LeadStatus
from tests.factories import make_user

pytestmark = pytest.mark.django_db

STAMPS = ("created_at", "contacted_at", "mql_at", "sql_at", "converted_at", "disqualified_at")


def run(text: str, **kwargs):
    return import_csv(kind="leads", stream=io.BytesIO(text.encode()), **kwargs)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def rep(db):
    return make_user(username="rep")


def test_a_lead_imported_at_sql_has_the_stamps_of_the_same_lead_advanced_in_the_app(rep):
    native = services.create_lead(actor=rep, last_name="Native", created_at=at("2026-01-01T00:00:00"))
    native = services.advance_lead(lead=native, actor=rep, status=LeadStatus.MQL, at=at("2026-01-10T00:00:00"))
    native = services.advance_lead(lead=native, actor=rep, status=LeadStatus.SQL, at=at("2026-02-03T00:00:00"))

    result = run(
        "Full Name,Lead Status,Owner,created_at,mql_at,sql_at\nAda Imported,SQL,rep,2026-01-01,2026-01-10,2026-02-03\n"
    )

    assert result.ok, result.errors
    imported = Lead.objects.get(last_name="Imported")
    assert imported.first_name == "Ada" and imported.status == "sql"
    for name in STAMPS:
        assert getattr(imported, name) == getattr(native, name), name


def test_a_converted_lead_names_its_deal_and_a_disqualified_one_gets_a_time(rep, pipeline):
    deal = services.create_deal(
        actor=rep, title="Won from a lead", external_id="D-1", created_at=at("2026-03-01T00:00:00")
    )

    result = run(
        "external_id,last_name,status,created_at,deal,disqualified_reason\n"
        "L-1,Converted,converted,2026-02-01,D-1,\n"
        "L-2,Dropped,Disqualified,2026-02-01,,No budget\n",
        actor=rep,
    )

    assert result.ok, result.errors
    converted, dropped = Lead.objects.get(external_id="L-1"), Lead.objects.get(external_id="L-2")
    assert converted.deal == deal and converted.converted_at == deal.created_at
    assert converted.contacted_at == converted.mql_at == converted.sql_at == deal.created_at
    assert dropped.disqualified_at == at("2026-02-01T00:00:00") and dropped.disqualified_reason == "No budget"


def test_bad_lead_rows_are_reported_and_nothing_is_written(rep, pipeline):
    result = run(
        "external_id,last_name,status,score,deal,created_at,sql_at\n"
        "L-1,A,hot,5,,,\n"
        "L-2,B,new,101,,,\n"
        "L-3,C,converted,,,,\n"
        "L-4,D,sql,,,2026-02-01,2026-01-01\n"
        "L-5,,new,,,,\n",
        actor=rep,
    )

    assert [(e.row, e.column) for e in result.errors] == [
        (2, "status"),
        (3, "score"),
        (4, "deal"),
        (5, "sql_at"),
        (6, "last_name"),
    ]
    assert not Lead.objects.exists()


def test_leads_update_by_external_id_and_a_converted_lead_keeps_its_status(rep, pipeline):
    services.create_deal(actor=rep, title="D", external_id="D-1")
    assert run("external_id,last_name,status,deal\nL-1,A,converted,D-1\nL-2,B,new,\n", actor=rep).ok

    moved = run("external_id,status,score\nL-2,mql,40\n")
    refused = run("external_id,status\nL-1,sql\n")

    assert (moved.updated, moved.created) == (1, 0), moved.errors
    lead = Lead.objects.get(external_id="L-2")
    assert (lead.status, lead.score, lead.last_name) == ("mql", 40, "B")
    assert lead.contacted_at == lead.mql_at is not None
    assert [e.column for e in refused.errors] == ["status"]
    assert Lead.objects.get(external_id="L-1").status == "converted"


def test_unknown_owners_become_inactive_users_with_create_missing(rep, pipeline):
    result = run("last_name,owner\nA,Jane Newhire\n", options=ImportOptions(create_missing=True))

    assert result.ok and result.new_references == {"owners": 1}
    assert not Lead.objects.get().owner.is_active
