"""Contract of organizations, contacts and the read-only configuration: pipelines, stages, lost reasons."""

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


@pytest.mark.parametrize("path", ["/api/v1/pipelines/", "/api/v1/stages/", "/api/v1/lost-reasons/"])
def test_configuration_is_not_writable_through_the_api(org, path):
    assert client_for(org.admin).post(path, {"name": "X"}, format="json").status_code == 405
