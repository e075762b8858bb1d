"""Contract of organizations, contacts and the configuration (pipelines, stages, lost reasons, teams)."""

import pytest

from pipeline import services
from tests.api.conftest import client_for
from tests.factories import stage

pytestmark = pytest.mark.django_db


@pytest.fixture
def rep(org):
    return client_for(org.rep)


def test_create_and_update_an_organization(rep, org):
    response = rep.post(
        "/api/v1/organizations/", {"name": "Globex", "website": "", "external_id": "G-1"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["owner"] == org.rep.pk and body["website"] == ""
    updated = rep.patch(
        f"/api/v1/organizations/{body['id']}/", {"website": "https://globex.example"}, format="json",
        HTTP_IF_MATCH=response["ETag"],
    )  # fmt: skip
    assert updated.status_code == 200 and updated.json()["website"] == "https://globex.example"
    stale = rep.patch(
        f"/api/v1/organizations/{body['id']}/", {"name": "X"}, format="json", HTTP_IF_MATCH=response["ETag"]
    )
    assert stale.status_code == 412


def test_external_ids_are_unique_per_kind(rep, org):
    services.create_organization(actor=org.other_rep, name="Theirs", external_id="DUP")
    response = rep.post("/api/v1/organizations/", {"name": "Mine", "external_id": "DUP"}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["external_id"]


@pytest.mark.parametrize("kind", ["organizations", "contacts", "deals", "leads"])
def test_a_taken_external_id_answers_the_same_whether_its_holder_is_visible_or_not(rep, org, pipeline, kind):
    # Unique per kind across the company: the answer must not tell an outsider which ids exist where.
    create = {
        "organizations": lambda owner, external_id: services.create_organization(
            actor=owner, name=f"Org {external_id}", external_id=external_id
        ),
        "contacts": lambda owner, external_id: services.create_contact(
            actor=owner, last_name=f"Contact {external_id}", external_id=external_id
        ),
        "deals": lambda owner, external_id: services.create_deal(
            actor=owner, title=f"Deal {external_id}", external_id=external_id
        ),
        "leads": lambda owner, external_id: services.create_lead(
            actor=owner, last_name=f"Lead {external_id}", external_id=external_id
        ),
    }[kind]
    create(org.rep, "VISIBLE")
    create(org.other_rep, "HIDDEN")
    body = {
        "organizations": {"name": "Mine"},
        "contacts": {"last_name": "Mine"},
        "deals": {"title": "Mine"},
        "leads": {"last_name": "Mine"},
    }[kind]
    answers = [
        rep.post(f"/api/v1/{kind}/", body | {"external_id": external_id}, format="json")
        for external_id in ("VISIBLE", "HIDDEN")
    ]
    for response in answers:
        assert response.status_code == 400
        assert response.json() == {"external_id": ["This external id is not available."]}


def test_contacts_filter_by_organization(rep, org):
    organization = services.create_organization(actor=org.rep, name="Umbrella")
    contact = rep.post(
        "/api/v1/contacts/", {"last_name": "Wesker", "organization": organization.pk, "email": "a@b.example"},
        format="json",
    )  # fmt: skip
    assert contact.status_code == 201, contact.content
    rep.post("/api/v1/contacts/", {"last_name": "Elsewhere"}, format="json")
    listed = rep.get(f"/api/v1/contacts/?organization={organization.pk}").json()["results"]
    assert [row["id"] for row in listed] == [contact.json()["id"]]


def test_pipelines_carry_their_stages_in_order(rep, pipeline):
    body = rep.get(f"/api/v1/pipelines/{pipeline.pk}/").json()
    assert body["is_default"] is True
    assert [row["name"] for row in body["stages"]][:2] == ["Prospecting", "Qualification"]
    proposal = next(row for row in body["stages"] if row["name"] == "Proposal")
    assert proposal["required_fields"] == ["amount", "expected_close_date", "contact"]


def test_stages_filter_by_pipeline_and_kind(rep, pipeline, other_pipeline):
    listed = rep.get(f"/api/v1/stages/?pipeline={other_pipeline.pk}&kind=won").json()["results"]
    assert [row["id"] for row in listed] == [stage(other_pipeline, "Won").pk]


def test_lost_reasons_list(rep, lost_reason):
    assert rep.get("/api/v1/lost-reasons/").json()["results"] == [
        {"id": lost_reason.pk, "name": "Price", "is_active": True}
    ]


# --- Configuration writes (admins) --------------------------------------------------------------------------------

NEW_STAGES = [
    {"name": "Lead in", "probability": 10},
    {"name": "Demo", "probability": 50, "required_fields": ["amount"], "forecast_category": "best_case"},
    {"name": "Won", "kind": "won", "probability": 100},
    {"name": "Lost", "kind": "lost", "probability": 0},
]


@pytest.fixture
def admin(org):
    return client_for(org.admin)


def test_admin_creates_a_pipeline_with_its_stages_in_order(admin, pipeline):
    response = admin.post("/api/v1/pipelines/", {"name": "Partners", "stages": NEW_STAGES}, format="json")
    assert response.status_code == 201, response.content
    stages = response.json()["stages"]
    assert [(row["name"], row["order"], row["kind"]) for row in stages] == [
        ("Lead in", 1, "open"),
        ("Demo", 2, "open"),
        ("Won", 3, "won"),
        ("Lost", 4, "lost"),
    ]
    assert stages[1]["required_fields"] == ["amount"] and stages[1]["rotting_days"] == 30


def test_a_new_default_pipeline_replaces_the_old_default(admin, pipeline):
    created = admin.post(
        "/api/v1/pipelines/", {"name": "Partners", "is_default": True, "stages": NEW_STAGES}, format="json"
    )
    assert created.json()["is_default"] is True
    assert admin.get(f"/api/v1/pipelines/{pipeline.pk}/").json()["is_default"] is False
    again = admin.patch(f"/api/v1/pipelines/{pipeline.pk}/", {"is_default": True}, format="json")
    assert again.json()["is_default"] is True
    assert admin.get(f"/api/v1/pipelines/{created.json()['id']}/").json()["is_default"] is False


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (NEW_STAGES[:3], "one lost stage"),
        ([NEW_STAGES[2], NEW_STAGES[3]], "at least one open stage"),
        ([*NEW_STAGES, {"name": "Demo", "probability": 5}], "already has a stage named"),
        ([NEW_STAGES[0], {"name": "Won", "kind": "won", "probability": 90}, NEW_STAGES[3]], "probability 100"),
    ],
)
def test_a_pipeline_with_bad_stages_is_400_under_stages(admin, stages, message):
    response = admin.post("/api/v1/pipelines/", {"name": "Broken", "stages": stages}, format="json")
    assert response.status_code == 400, response.content
    assert message in " ".join(response.json()["stages"])


def test_pipeline_names_are_unique(admin, pipeline):
    response = admin.post("/api/v1/pipelines/", {"name": pipeline.name, "stages": NEW_STAGES}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["name"]


def test_a_stage_inserted_at_an_order_moves_the_later_ones_on(admin, pipeline):
    response = admin.post(
        "/api/v1/stages/", {"pipeline": pipeline.pk, "name": "Security review", "probability": 30, "order": 3},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.content
    assert response.json()["kind"] == "open"
    names = [
        row["name"] for row in admin.get(f"/api/v1/stages/?pipeline={pipeline.pk}&ordering=order").json()["results"]
    ]
    assert names[:4] == ["Prospecting", "Qualification", "Security review", "Discovery"]


def test_changing_a_stage_order_swaps_it_with_the_stage_there(admin, pipeline):
    discovery = stage(pipeline, "Discovery")
    response = admin.patch(f"/api/v1/stages/{discovery.pk}/", {"order": 1}, format="json")
    assert response.status_code == 200, response.content
    assert admin.get(f"/api/v1/stages/{stage(pipeline, 'Prospecting').pk}/").json()["order"] == discovery.order


def test_a_won_stage_keeps_probability_100(admin, pipeline):
    response = admin.patch(f"/api/v1/stages/{stage(pipeline, 'Won').pk}/", {"probability": 90}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["probability"]


def test_stage_required_fields_are_checked(admin, pipeline):
    qualification = stage(pipeline, "Qualification")
    response = admin.patch(f"/api/v1/stages/{qualification.pk}/", {"required_fields": ["colour"]}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["required_fields"]
    response = admin.patch(f"/api/v1/stages/{qualification.pk}/", {"required_fields": ["need"]}, format="json")
    assert response.status_code == 200 and response.json()["required_fields"] == ["need"]


def test_admin_adds_and_retires_lost_reasons(admin, lost_reason):
    created = admin.post("/api/v1/lost-reasons/", {"name": "Timing"}, format="json")
    assert created.status_code == 201 and created.json()["is_active"] is True
    retired = admin.patch(f"/api/v1/lost-reasons/{lost_reason.pk}/", {"is_active": False}, format="json")
    assert retired.status_code == 200 and retired.json()["is_active"] is False
    assert admin.post("/api/v1/lost-reasons/", {"name": "Timing"}, format="json").status_code == 400


def test_admin_creates_a_team_led_by_managers_only(admin, org):
    created = admin.post("/api/v1/teams/", {"name": "North", "managers": [org.idle_manager.pk]}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["managers"] == [org.idle_manager.pk] and created.json()["members"] == []
    refused = admin.patch(f"/api/v1/teams/{created.json()['id']}/", {"managers": [org.rep.pk]}, format="json")
    assert refused.status_code == 400 and list(refused.json()) == ["managers"]


def test_a_stage_default_category_reaches_its_deals_without_an_override(admin, org, pipeline):
    """SPEC §2: a deal's forecast category is its stage's default unless overridden, also after the default changes."""
    from decimal import Decimal

    from forecasting.services import recompute_metrics
    from tests.factories import make_qualified_deal

    discovery = stage(pipeline, "Discovery")
    follows = make_qualified_deal(owner=org.rep, pipeline=pipeline, stage=discovery, amount=Decimal("1000.00"))
    overridden = make_qualified_deal(
        owner=org.rep,
        pipeline=pipeline,
        stage=discovery,
        amount=Decimal("300.00"),
        forecast_category_override="best_case",
    )
    elsewhere = make_qualified_deal(owner=org.rep, pipeline=pipeline, stage=stage(pipeline, "Qualification"))
    versions = {deal.pk: deal.version for deal in (follows, overridden, elsewhere)}

    answer = admin.patch(f"/api/v1/stages/{discovery.pk}/", {"forecast_category": "commit"}, format="json")

    assert answer.status_code == 200, answer.content
    for deal in (follows, overridden, elsewhere):
        deal.refresh_from_db()
    assert (follows.forecast_category, overridden.forecast_category, elsewhere.forecast_category) == (
        "commit",
        "best_case",
        "pipeline",
    )
    # The restamped deal reads as changed (a new ETag, and in an `updated_since` sync); the others do not.
    assert follows.version == versions[follows.pk] + 1
    assert (overridden.version, elsewhere.version) == (versions[overridden.pk], versions[elsewhere.pk])
    recompute_metrics()
    row = admin.get("/api/v1/forecast/", {"period": "2026-Q4"}).json()["results"][0]
    assert (row["commit"], row["best_case"]) == ("1000.00", "1300.00")
