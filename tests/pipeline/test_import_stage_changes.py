"""Importing full stage histories (moves back included), and organizations and contacts."""

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pipeline import services
from pipeline.importing import ImportOptions, import_csv
from pipeline.models import Contact, Deal, Organization, StageChange
from pipeline.selectors import audit_trail, deal_history
from tests.factories import make_user, stage

pytestmark = pytest.mark.django_db


def run(text: str, kind: str, **kwargs):
    return import_csv(kind=kind, stream=io.BytesIO(text.encode()), **kwargs)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def history(deal: Deal) -> list[tuple[str | None, str, datetime, str | None]]:
    return [
        (
            change.from_stage.name if change.from_stage else None,
            change.to_stage.name,
            change.changed_at,
            change.changed_by.username if change.changed_by else None,
        )
        for change in deal_history(deal=deal)
    ]


@pytest.fixture
def rep(db):
    return make_user(username="rep")


def test_a_history_with_a_move_back_matches_the_same_moves_made_through_the_services(rep, pipeline):
    moves = [
        ("Qualification", "2026-01-03T10:00:00"),
        ("Discovery", "2026-01-10T10:00:00"),
        ("Qualification", "2026-01-20T10:00:00"),  # the decision-maker left: back
        ("Discovery", "2026-02-01T10:00:00"),
        ("Won", "2026-03-01T10:00:00"),
    ]
    native = services.create_deal(
        actor=rep, title="Native", pipeline=pipeline, amount=Decimal("5"), created_at=at("2026-01-01T10:00:00")
    )
    for name, when in moves:
        native = services.move_deal(deal=native, stage=stage(pipeline, name), actor=rep, at=at(when))

    deals = run(
        "external_id,title,stage,owner,amount,created_at,closed_at\n"
        "H-1,Imported,Won,rep,5,2026-01-01T10:00:00Z,2026-03-01T10:00:00Z\n",
        "deals",
    )
    changes = run(
        "deal,stage,changed_at,changed_by\n"
        + "".join(f"H-1,{name},{when}Z,rep\n" for name, when in reversed(moves))  # any order
        + "H-1,Prospecting,2026-01-01T10:00:00Z,rep\n",
        "stage_changes",
    )

    assert deals.ok and changes.ok, (deals.errors, changes.errors)
    assert (changes.created, changes.updated) == (6, 1)
    imported = Deal.objects.get(external_id="H-1")
    assert history(imported) == history(native)
    for name in ("status", "created_at", "closed_at", "stage_entered_at"):
        assert getattr(imported, name) == getattr(native, name), name


def test_importing_a_history_twice_replaces_rather_than_duplicates(rep, pipeline):
    run("external_id,title,stage,owner,created_at\nH-2,A,Qualification,rep,2026-01-01\n", "deals")
    text = "deal,stage,changed_at\nH-2,Prospecting,2026-01-01\nH-2,Qualification,2026-01-05\n"

    first, second = run(text, "stage_changes"), run(text, "stage_changes")

    assert first.ok and second.ok
    assert (first.created, first.updated, second.created, second.updated, second.unchanged) == (2, 1, 0, 0, 1)
    deal = Deal.objects.get()
    assert [entry[:3] for entry in history(deal)] == [
        (None, "Prospecting", at("2026-01-01T00:00:00")),
        ("Prospecting", "Qualification", at("2026-01-05T00:00:00")),
    ]
    assert deal.stage_entered_at == at("2026-01-05T00:00:00") and deal.closed_at is None


def test_a_history_must_name_known_deals_end_in_the_current_stage_and_move_each_time(rep, pipeline):
    run("external_id,title,stage,owner,created_at\nH-3,A,Qualification,rep,2026-01-01\n", "deals")

    result = run(
        "deal,stage,changed_at\n"
        "H-3,Prospecting,2026-01-01\n"
        "H-3,Prospecting,2026-01-02\n"
        "H-3,Discovery,2026-01-03\n"
        "NOPE,Prospecting,2026-01-01\n"
        "H-3,Nowhere,2026-01-01\n"
        "H-3,Prospecting,\n",
        "stage_changes",
    )

    assert [(e.row, e.column) for e in result.errors] == [
        (3, "stage"),
        (4, "stage"),
        (5, "deal"),
        (6, "stage"),
        (7, "changed_at"),
    ]
    assert "current stage “Qualification”" in result.errors[1].message
    assert [entry[1] for entry in history(Deal.objects.get())] == ["Qualification"]  # untouched


def test_organizations_and_contacts_upsert_by_external_id(rep, pipeline):
    orgs = run(
        "Account ID,Account,Website,Sector\nO-1,Acme,acme.example,Retail\nO-2,Globex,,Energy\n",
        "organizations",
    )
    contacts = run(
        "id,Full Name,Email,Company,Position\nC-1,Ada Lovelace,ada@acme.example,O-1,CTO\nC-2,Grace Hopper,,Globex,\n",
        "contacts",
    )
    again = run("Account ID,Account,Website,Sector\nO-1,Acme Corp,acme.example,Retail\n", "organizations")

    assert orgs.ok and contacts.ok and again.ok, (orgs.errors, contacts.errors, again.errors)
    assert (again.created, again.updated) == (0, 1)
    acme = Organization.objects.get(external_id="O-1")
    assert (acme.name, acme.website, acme.industry) == ("Acme Corp", "https://acme.example", "Retail")
    ada = Contact.objects.get(external_id="C-1")
    assert (ada.first_name, ada.last_name, ada.email, ada.job_title, ada.organization) == (
        "Ada",
        "Lovelace",
        "ada@acme.example",
        "CTO",
        acme,
    )
    assert Contact.objects.get(external_id="C-2").organization.name == "Globex"


def test_contacts_refuse_bad_emails_and_unknown_organizations_unless_created(rep, pipeline):
    text = "last_name,email,organization\nLovelace,not-an-email,\nHopper,,Initech\n"

    refused = run(text, "contacts")
    created = run(text.replace("not-an-email", "ada@x.example"), "contacts", options=ImportOptions(create_missing=True))

    assert [(e.row, e.column) for e in refused.errors] == [(2, "email"), (3, "organization")]
    assert created.ok and Organization.objects.get().name == "Initech"
    assert StageChange.objects.count() == 0


def test_imports_of_customers_and_histories_leave_audit_entries(rep, pipeline):
    run("external_id,name\nO-1,Acme\n", "organizations", actor=rep)
    run("external_id,name\nO-1,Acme Corp\n", "organizations", actor=rep)
    run("external_id,title,stage,owner,created_at\nH-9,A,Qualification,rep,2026-01-01\n", "deals")
    run("deal,stage,changed_at\nH-9,Prospecting,2025-12-01\nH-9,Qualification,2026-01-01\n", "stage_changes", actor=rep)

    renamed, created = audit_trail(instance=Organization.objects.get())
    assert (created.action, created.changes["name"], created.actor) == ("created", [None, "Acme"], rep)
    assert (renamed.action, renamed.changes, renamed.object_repr) == (
        "updated",
        {"name": ["Acme", "Acme Corp"]},
        "Acme Corp",
    )
    history_entry = audit_trail(instance=Deal.objects.get()).first()
    assert history_entry.action == "updated"
    assert history_entry.changes == {
        "created_at": ["2026-01-01T00:00:00Z", "2025-12-01T00:00:00Z"],
        "stage_changes": [1, 2],
    }
