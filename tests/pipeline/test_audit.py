"""The audit trail: who changed what and when, written by the services and the admin, never rewritten."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from accounts.models import AuditEntry
from pipeline import services
from pipeline.selectors import audit_trail
from tests.factories import make_deal, make_user, stage

pytestmark = pytest.mark.django_db


@pytest.fixture
def rep(db):
    return make_user(username="rep")


def test_creating_updating_and_moving_a_deal_is_recorded_with_old_and_new_values(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline, amount=Decimal("100"))
    services.update_deal(deal=deal, actor=rep, amount=Decimal("250"), title="Bigger")
    services.move_deal(deal=deal, stage=stage(pipeline, "Qualification"), actor=rep)

    moved, updated, created = audit_trail(instance=deal)

    assert (created.action, created.actor, created.changes["amount"]) == ("created", rep, [None, "100.00"])
    assert updated.action == "updated"
    assert updated.changes == {"title": [deal.title, "Bigger"], "amount": ["100.00", "250.00"]}
    assert moved.action == "stage_changed"
    assert moved.changes["stage"] == [stage(pipeline, "Prospecting").pk, stage(pipeline, "Qualification").pk]
    assert set(moved.changes) == {"stage", "stage_entered_at"}


def test_an_update_that_changes_nothing_leaves_no_entry(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline, title="Same")

    services.update_deal(deal=deal, actor=rep, title="Same")

    assert audit_trail(instance=deal).count() == 1


def test_a_refused_write_leaves_no_entry(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with pytest.raises(Exception):  # noqa: B017 - the refusal itself is tested in test_services
        services.move_deal(deal=deal, stage=stage(pipeline, "Proposal"), actor=rep)

    assert [entry.action for entry in audit_trail(instance=deal)] == ["created"]


def test_lead_status_changes_and_conversion_are_recorded(rep, pipeline):
    lead = services.create_lead(actor=rep, last_name="Doe", company="Acme")
    services.advance_lead(lead=lead, actor=rep, status="mql")
    services.convert_lead(lead=lead, actor=rep)

    actions = [entry.action for entry in audit_trail(instance=lead)]

    assert actions == ["converted", "status_changed", "created"]
    assert audit_trail(instance=lead).first().changes["status"] == ["mql", "converted"]


def test_organization_and_contact_changes_are_recorded(rep):
    organization = services.create_organization(actor=rep, name="Acme")
    services.update_organization(organization=organization, actor=rep, website="https://acme.test")

    assert audit_trail(instance=organization).first().changes == {"website": ["", "https://acme.test"]}


def test_the_audit_trail_is_never_rewritten(rep, pipeline):
    make_deal(owner=rep, pipeline=pipeline)

    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry.objects.update(object_repr="forged")
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry.objects.all().delete()


def test_stage_changes_made_in_the_admin_are_recorded(client, pipeline):
    admin_user = make_user(role="admin", username="root", is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    stages = list(pipeline.stages.order_by("order"))
    data = {"name": pipeline.name, "is_default": "on", "created_at_0": "2026-01-01", "created_at_1": "00:00:00"}
    data |= {
        "stages-TOTAL_FORMS": str(len(stages)),
        "stages-INITIAL_FORMS": str(len(stages)),
        "stages-MIN_NUM_FORMS": "0",
        "stages-MAX_NUM_FORMS": "1000",
    }
    for index, each in enumerate(stages):
        data |= {
            f"stages-{index}-id": str(each.pk),
            f"stages-{index}-pipeline": str(pipeline.pk),
            f"stages-{index}-order": str(each.order),
            f"stages-{index}-name": each.name,
            f"stages-{index}-kind": each.kind,
            f"stages-{index}-probability": str(55 if each.name == "Discovery" else each.probability),
            f"stages-{index}-rotting_days": str(each.rotting_days),
            f"stages-{index}-forecast_category": each.forecast_category,
            f"stages-{index}-required_fields": each.required_fields,
        }

    response = client.post(reverse("admin:pipeline_pipeline_change", args=[pipeline.pk]), data)

    assert response.status_code == 302, response.content.decode()[:3000]
    [entry] = audit_trail(instance=stage(pipeline, "Discovery"))
    assert (entry.actor, entry.action, entry.changes) == (admin_user, "updated", {"probability": [40, 55]})


def test_configuration_changed_through_the_services_is_recorded(pipeline):
    admin_user = make_user(role="admin", username="root")
    discovery = stage(pipeline, "Discovery")

    services.update_stage(stage=discovery, actor=admin_user, probability=45)
    services.update_pipeline(pipeline=pipeline, actor=admin_user, name="Direct")

    assert audit_trail(instance=discovery).first().changes == {"probability": [40, 45]}
    assert audit_trail(instance=pipeline).first().changes == {"name": ["New Business", "Direct"]}
