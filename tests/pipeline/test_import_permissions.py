"""An import run as a user changes only what that user may change (SPEC §2), like every other door."""

import io

import pytest

from pipeline import services
from pipeline.importing import ImportOptions, import_csv
from pipeline.models import Deal, Organization, StageChange
from tests.factories import make_deal

pytestmark = pytest.mark.django_db


def run(text: str, kind: str = "deals", **kwargs):
    return import_csv(kind=kind, stream=io.BytesIO(text.encode()), **kwargs)


def problems(result) -> list[tuple[int, str]]:
    return [(error.row, error.column) for error in result.errors]


def test_a_rep_cannot_give_deals_to_others_nor_update_theirs(org, pipeline):
    make_deal(owner=org.other_rep, pipeline=pipeline, title="Theirs", external_id="X-1")

    result = run(
        "external_id,title,stage,owner\n"
        "X-1,Mine now,Prospecting,\n"
        "X-2,Gift,Prospecting,teammate\n"
        "X-3,Own,Prospecting,rep\n",
        actor=org.rep,
    )

    assert problems(result) == [(2, "external_id"), (3, "owner")]
    assert "may not change" in result.errors[0].message
    assert Deal.objects.get(external_id="X-1").title == "Theirs"
    assert not Deal.objects.filter(external_id__in=["X-2", "X-3"]).exists()


def test_a_manager_may_give_deals_to_the_team_and_an_admin_to_anyone(org, pipeline):
    text = "title,stage,owner\nA,Prospecting,rep\nB,Prospecting,other_rep\n"

    by_manager = run(text, actor=org.manager)
    by_admin = run(text, actor=org.admin)

    assert problems(by_manager) == [(3, "owner")]
    assert by_admin.ok and Deal.objects.count() == 2


def test_a_rep_cannot_rewrite_the_history_of_a_deal_they_may_not_change(org, pipeline):
    make_deal(owner=org.other_rep, pipeline=pipeline, external_id="X-1")

    result = run("deal,stage,changed_at\nX-1,Prospecting,2026-01-01\n", "stage_changes", actor=org.rep)

    assert problems(result) == [(2, "deal")]
    assert StageChange.objects.count() == 1


def test_customers_a_user_cannot_see_are_neither_updated_nor_linked(org, pipeline):
    services.create_organization(actor=org.other_rep, name="Hidden Inc", external_id="O-1")

    update = run("external_id,name\nO-1,Renamed\n", "organizations", actor=org.rep)
    link = run("title,stage,organization\nA,Prospecting,Hidden Inc\n", actor=org.rep)

    assert problems(update) == [(2, "external_id")]
    assert problems(link) == [(2, "organization")]  # as unknown as it is invisible
    assert Organization.objects.get().name == "Hidden Inc"


def test_only_an_admin_or_an_operator_creates_missing_owners(org, pipeline):
    text = "title,stage,owner\nA,Prospecting,New Hire\n"
    options = ImportOptions(create_missing=True)

    by_manager = run(text, actor=org.manager, options=options)
    by_admin = run(text, actor=org.admin, options=options)

    assert problems(by_manager) == [(2, "owner")]
    assert by_admin.ok and not Deal.objects.get().owner.is_active
