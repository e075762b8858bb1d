"""Export: visibility, and export → import into an empty database gives the same data and history."""

import csv
import io
from datetime import datetime

import pytest
from django.core.management import call_command

from accounts.models import AuditEntry
from pipeline import services
from pipeline.exporting import deal_reference, export_csv
from pipeline.importing import import_csv
from pipeline.models import Activity, Contact, Deal, Lead, Organization, StageChange
from tests.factories import make_deal
from tools.generators.demo import seed_demo

pytestmark = pytest.mark.django_db


def exported(kind: str, user=None) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(export_csv(kind=kind, user=user)))))


def test_export_shows_each_user_only_what_they_may_see(org, pipeline):
    deals = {
        name: make_deal(owner=getattr(org, name), pipeline=pipeline, title=f"{name}'s deal")
        for name in ("rep", "teammate", "other_rep")
    }
    for name, deal in deals.items():
        customer = services.create_organization(actor=getattr(org, name), name=f"{name}'s customer")
        services.update_deal(deal=deal, actor=None, organization=customer)
        services.log_activity(actor=getattr(org, name), kind="call", subject=f"{name}'s call", deal=deal)

    def titles(kind: str, user, column: str) -> set[str]:
        return {row[column] for row in exported(kind, user)}

    assert titles("deals", org.rep, "title") == {"rep's deal"}
    assert titles("deals", org.manager, "title") == {"rep's deal", "teammate's deal"}
    assert titles("deals", org.other_manager, "title") == {"other_rep's deal"}
    assert titles("deals", org.admin, "title") == {"rep's deal", "teammate's deal", "other_rep's deal"}
    assert titles("organizations", org.rep, "name") == {"rep's customer"}
    assert titles("activities", org.teammate, "subject") == {"teammate's call"}
    assert titles("stage_changes", org.rep, "deal") == {deal_reference(None, deals["rep"].pk)}
    assert titles("deals", org.idle_manager, "title") == set()


def test_export_csv_command_limits_to_the_user(org, pipeline, capsys):
    make_deal(owner=org.rep, pipeline=pipeline, title="Mine")
    make_deal(owner=org.other_rep, pipeline=pipeline, title="Theirs")

    call_command("export_csv", "deals", "--user", "rep")

    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["title"] for row in rows] == ["Mine"]
    assert rows[0]["owner"] == "rep" and rows[0]["stage"] == "Prospecting"


def _snapshot() -> dict:
    """Every deal, its history, and the customers, keyed by what survives a round trip (names, references)."""

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    deals = {}
    for deal in Deal.objects.select_related(
        "pipeline", "stage", "owner", "organization", "contact", "lost_reason"
    ).prefetch_related("stage_changes__from_stage", "stage_changes__to_stage", "stage_changes__changed_by"):
        history = [
            (
                change.from_stage.name if change.from_stage else None,
                change.to_stage.name,
                when(change.changed_at),
                change.changed_by.username if change.changed_by else None,
            )
            for change in sorted(deal.stage_changes.all(), key=lambda change: (change.changed_at, change.id))
        ]
        deals[deal.external_id or deal_reference(None, deal.pk)] = {
            "title": deal.title,
            "pipeline": deal.pipeline.name,
            "stage": deal.stage.name,
            "status": deal.status,
            "owner": deal.owner.username,
            "organization": deal.organization.name if deal.organization else None,
            "contact": deal.contact.email if deal.contact else None,
            "amount": deal.amount,
            "currency": deal.currency,
            "expected_close_date": deal.expected_close_date,
            "created_at": when(deal.created_at),
            "closed_at": when(deal.closed_at),
            "stage_entered_at": when(deal.stage_entered_at),
            "lost_reason": deal.lost_reason.name if deal.lost_reason else None,
            "lost_note": deal.lost_note,
            "source": deal.source,
            "forecast": (deal.forecast_category, deal.forecast_category_override),
            "bant": (deal.budget, deal.authority, deal.need, deal.timeline),
            "history": history,
        }
    organizations = sorted(
        Organization.objects.values_list("name", "website", "industry", "owner__username", "created_at")
    )
    contacts = sorted(
        Contact.objects.values_list(
            "first_name",
            "last_name",
            "email",
            "phone",
            "job_title",
            "organization__name",
            "owner__username",
            "created_at",
        )
    )
    leads = sorted(
        Lead.objects.values_list(
            "first_name", "last_name", "email", "phone", "company", "job_title", "source", "status", "score",
            "owner__username", "organization__name", "contact__email", "deal__title", "budget", "authority", "need",
            "timeline", "disqualified_reason", "created_at", "contacted_at", "mql_at", "sql_at", "converted_at",
            "disqualified_at",
        ),
        key=repr,
    )  # fmt: skip
    return {"deals": deals, "organizations": organizations, "contacts": contacts, "leads": leads}


def test_export_then_import_into_an_empty_database_gives_the_same_deals_history_customers_and_leads(db, tmp_path):
    seed_demo(deals=150, seed=3, now=datetime.fromisoformat("2026-06-01T00:00:00+00:00"))
    before = _snapshot()
    assert any(len(deal["history"]) > 2 for deal in before["deals"].values())
    assert any(deal["status"] == "lost" for deal in before["deals"].values())
    assert Lead.objects.filter(status="converted").exists() and Lead.objects.filter(status="disqualified").exists()
    kinds = ("organizations", "contacts", "deals", "stage_changes", "leads")
    files = {kind: "".join(export_csv(kind=kind, user=None)).encode() for kind in kinds}

    Activity.objects.all().delete()
    Lead.objects.all().delete()
    StageChange.objects.all().delete()
    Deal.objects.all().delete()
    Contact.objects.all().delete()
    Organization.objects.all().delete()

    for kind in kinds:
        result = import_csv(kind=kind, stream=io.BytesIO(files[kind]))
        assert result.ok, (kind, result.errors[:5])

    after = _snapshot()
    assert after["organizations"] == before["organizations"]
    assert after["contacts"] == before["contacts"]
    assert after["leads"] == before["leads"]
    assert after["deals"].keys() == before["deals"].keys()
    for key, deal in before["deals"].items():
        assert after["deals"][key] == deal, key


def _history() -> list[tuple]:
    return list(StageChange.objects.order_by("id").values_list("deal_id", "from_stage_id", "to_stage_id", "changed_at"))


def test_deals_exported_without_external_ids_reimport_unchanged(org, pipeline, lost_reason):
    from tests.factories import make_qualified_deal, stage

    deals = [make_qualified_deal(owner=org.rep, pipeline=pipeline, title=f"Deal {n}") for n in range(3)]
    services.move_deal(deal=deals[0], stage=stage(pipeline, "Discovery"), actor=org.rep)
    services.move_deal(deal=deals[1], stage=stage(pipeline, "Lost"), actor=org.rep, lost_reason=lost_reason)
    lead = services.create_lead(actor=org.rep, last_name="Lead", external_id="lead-1")
    services.convert_lead(lead=lead, actor=org.rep, title="Converted", pipeline=pipeline)
    kinds = ("deals", "stage_changes", "leads")
    files = {kind: "".join(export_csv(kind=kind, user=org.rep)).encode() for kind in kinds}
    assert all(row["external_id"].startswith("crm-deal-") for row in exported("deals", org.rep))
    count, history, audit = Deal.objects.count(), _history(), AuditEntry.objects.count()

    for kind, content in files.items():
        result = import_csv(kind=kind, stream=io.BytesIO(content), actor=org.rep)
        assert result.ok, (kind, result.errors)
        assert (result.created, result.updated) == (0, 0), (kind, result.summary())

    assert import_csv(kind="deals", stream=io.BytesIO(files["deals"]), actor=org.rep).unchanged == 4
    assert Deal.objects.count() == count and _history() == history and AuditEntry.objects.count() == audit


def test_a_crm_deal_reference_to_a_deal_the_user_may_not_change_is_refused(org, pipeline):
    theirs = make_deal(owner=org.other_rep, pipeline=pipeline, title="Theirs")
    content = "".join(export_csv(kind="deals", user=org.other_rep)).encode()

    result = import_csv(kind="deals", stream=io.BytesIO(content), actor=org.rep)

    assert [(error.row, error.column) for error in result.errors] == [(2, "external_id")]
    assert Deal.objects.get() == theirs


def test_a_crm_deal_reference_no_deal_has_is_a_new_external_id(org, pipeline):
    content = f"external_id,title\n{deal_reference(None, 999999)},Migrated\n".encode()

    assert import_csv(kind="deals", stream=io.BytesIO(content), actor=org.rep).created == 1
    assert Deal.objects.get().external_id == "crm-deal-999999"
