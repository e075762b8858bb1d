"""Contract of /api/v1/deals/: shapes, filters, ordering, search, pagination, conditional writes, move, history."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from pipeline import services
from pipeline.models import Deal
from tests.api.conftest import client_for
from tests.factories import make_deal, make_lost_reason, make_qualified_deal, stage

pytestmark = pytest.mark.django_db

DEAL_KEYS = {
    "id", "title", "pipeline", "stage", "status", "owner", "organization", "contact", "amount", "currency",
    "expected_close_date", "budget", "authority", "need", "timeline", "lost_note", "forecast_category",
    "forecast_category_override", "lost_reason", "source", "external_id", "created_at", "updated_at",
    "stage_entered_at", "closed_at", "last_touched_at", "version",
}  # fmt: skip


@pytest.fixture
def rep(org):
    return client_for(org.rep)


def ids_of(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


# --- Reading ------------------------------------------------------------------------------------------------------


def test_detail_has_every_field_and_a_version_etag(rep, org, pipeline):
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    response = rep.get(f"/api/v1/deals/{deal.pk}/")
    assert response.status_code == 200
    assert set(response.json()) == DEAL_KEYS
    assert response["ETag"] == 'W/"1"'
    assert response.json()["amount"] == "12000.00"  # amounts are decimal strings


def test_list_is_a_paginated_envelope_whose_links_work(rep, org, pipeline):
    deals = [make_deal(owner=org.rep, pipeline=pipeline) for _ in range(5)]
    first = rep.get("/api/v1/deals/?page_size=2&ordering=id")
    body = first.json()
    assert set(body) == {"next", "previous", "results"}  # no count unless asked: it costs a COUNT(*)
    assert body["previous"] is None
    second = rep.get(body["next"])
    third = rep.get(second.json()["next"])
    assert third.json()["next"] is None
    assert rep.get(second.json()["previous"]).json() == body
    seen = ids_of(first) + ids_of(second) + ids_of(third)
    assert seen == sorted(deal.pk for deal in deals)


def test_page_size_defaults_to_50_and_goes_up_to_200(rep, org, pipeline, many_deals):
    many_deals(201)
    assert len(rep.get("/api/v1/deals/").json()["results"]) == 50
    assert len(rep.get("/api/v1/deals/?page_size=200").json()["results"]) == 200
    assert rep.get("/api/v1/deals/?page_size=1000").json() == {"page_size": ["A whole number from 1 to 200."]}


def test_page_numbers_are_refused_with_the_way_to_walk(rep):
    answer = rep.get("/api/v1/deals/?page=9")
    assert answer.status_code == 400 and "cursor" in answer.json()["page"][0]


@pytest.fixture
def filterable(org, pipeline, other_pipeline, lost_reason):
    """Deals that differ in one attribute each, by name."""
    organization = services.create_organization(actor=org.rep, name="Initech")
    deals = {
        "plain": make_deal(owner=org.rep, pipeline=pipeline, source="web"),
        "big": make_qualified_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("90000"), source="referral"),
        "closing": make_qualified_deal(owner=org.rep, pipeline=pipeline, expected_close_date="2027-03-15"),
        "renewal": make_deal(owner=org.rep, pipeline=other_pipeline, organization=organization, external_id="crm-9"),
        "teammate's": make_deal(owner=org.teammate, pipeline=pipeline),
        "other team's": make_deal(owner=org.other_rep, pipeline=pipeline),
    }
    deals["lost"] = services.move_deal(
        deal=make_deal(owner=org.rep, pipeline=pipeline), stage=stage(pipeline, "Lost"), lost_reason=lost_reason,
        actor=org.rep,
    )  # fmt: skip
    return deals


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("pipeline={other_pipeline}", {"renewal"}),
        ("stage={lost_stage}", {"lost"}),
        ("status=lost", {"lost"}),
        ("status=open&source=referral", {"big"}),
        ("owner={teammate}", {"teammate's"}),
        ("team={team}&amount_min=1", {"big", "closing"}),
        ("team={other_team}", {"other team's"}),
        ("organization={initech}", {"renewal"}),
        ("amount_min=20000", {"big"}),
        ("amount_max=20000", {"closing"}),
        ("expected_close_after=2027-01-01", {"closing"}),
        ("expected_close_before=2027-01-01&amount_min=1", {"big"}),
        ("external_id=crm-9", {"renewal"}),
        ("search=initech", {"renewal"}),
        ("updated_since={future}", set()),
    ],
)
def test_deal_filters(org, pipeline, other_pipeline, filterable, query, expected):
    admin = client_for(org.admin)
    values = {
        "other_pipeline": other_pipeline.pk,
        "lost_stage": stage(pipeline, "Lost").pk,
        "teammate": org.teammate.pk,
        "team": org.team.pk,
        "other_team": org.other_team.pk,
        "initech": filterable["renewal"].organization_id,
        "future": (timezone.now() + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
    }
    listed = set(ids_of(admin.get(f"/api/v1/deals/?{query.format(**values)}")))
    assert listed == {filterable[name].pk for name in expected}


def test_updated_since_includes_deals_changed_after_it(rep, filterable):
    before = (timezone.now() - timedelta(minutes=1)).isoformat()
    assert len(ids_of(rep.get("/api/v1/deals/", {"updated_since": before}))) == 5  # the rep's own


def test_bad_filter_values_are_400_naming_the_filter(rep):
    response = rep.get("/api/v1/deals/?status=maybe&amount_min=lots&expected_close_after=soon")
    assert response.status_code == 400
    assert set(response.json()) == {"status", "amount_min", "expected_close_after"}


def test_ordering_and_tie_breaking(rep, filterable):
    ordered = ids_of(rep.get("/api/v1/deals/?ordering=-amount"))
    amounts = [rep.get(f"/api/v1/deals/{pk}/").json()["amount"] for pk in ordered]
    numbers = [Decimal(amount) for amount in amounts if amount is not None]
    assert numbers == sorted(numbers, reverse=True)
    by_id = ids_of(rep.get("/api/v1/deals/?ordering=id"))
    assert by_id == sorted(by_id)
    # An unknown ordering field is refused, naming the ones allowed, rather than quietly ignored.
    refused = rep.get("/api/v1/deals/?ordering=password")
    assert refused.status_code == 400 and "expected_close_date" in refused.json()["ordering"][0]


def test_last_touched_at_is_read_only_and_answers_what_the_database_stamped(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Touched")

    def stamped():
        return Deal.objects.values_list("last_touched_at", flat=True).get(pk=deal.pk)

    read = rep.get(f"/api/v1/deals/{deal.pk}/").json()
    assert parse_datetime(read["last_touched_at"]) == stamped()
    assert [row["last_touched_at"] for row in rep.get("/api/v1/deals/").json()["results"]] == [read["last_touched_at"]]

    # A write answers the touch it made (the database stamps it as it writes, after the deal was read), and a
    # value sent for it is ignored.
    patched = rep.patch(
        f"/api/v1/deals/{deal.pk}/", {"source": "web", "last_touched_at": "2001-01-01T00:00:00Z"}, format="json"
    )
    assert patched.status_code == 200, patched.content
    assert parse_datetime(patched.json()["last_touched_at"]) == stamped() > parse_datetime(read["last_touched_at"])
    moved = rep.post(f"/api/v1/deals/{deal.pk}/move/", {"stage": stage(pipeline, "Qualification").pk}, format="json")
    assert moved.status_code == 200, moved.content
    assert (
        parse_datetime(moved.json()["last_touched_at"]) == stamped() > parse_datetime(patched.json()["last_touched_at"])
    )
    # Not an ordering: no index serves it whatever the filters (the one there leads with the status).
    assert rep.get("/api/v1/deals/?ordering=last_touched_at").status_code == 400


# --- Writing ------------------------------------------------------------------------------------------------------


def test_create_defaults_to_the_first_stage_of_the_default_pipeline(rep, org, pipeline):
    response = rep.post("/api/v1/deals/", {"title": "New", "amount": "10.50"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["pipeline"] == pipeline.pk and body["stage"] == stage(pipeline, "Prospecting").pk
    assert body["owner"] == org.rep.pk and body["status"] == "open" and body["version"] == 1
    assert response["ETag"] == 'W/"1"'
    history = rep.get(f"/api/v1/deals/{body['id']}/history/").json()["results"]
    assert [(row["from_stage"], row["to_stage"]) for row in history] == [(None, body["stage"])]


def test_create_in_a_stage_that_requires_fields_names_each_missing_one(rep, pipeline):
    response = rep.post("/api/v1/deals/", {"title": "New", "stage": stage(pipeline, "Proposal").pk}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"amount", "expected_close_date", "contact"}


def test_create_refuses_invalid_fields_per_field(rep):
    response = rep.post("/api/v1/deals/", {"amount": "-5", "currency": "dollars"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"title", "amount", "currency"}


def test_patch_with_matching_if_match_succeeds_and_returns_the_new_etag(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    etag = rep.get(f"/api/v1/deals/{deal.pk}/")["ETag"]
    response = rep.patch(f"/api/v1/deals/{deal.pk}/", {"amount": "99.00"}, format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 200
    assert response["ETag"] == 'W/"2"' and response.json()["amount"] == "99.00"


def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    services.update_deal(deal=deal, actor=org.rep, title="Changed elsewhere")
    response = rep.patch(f"/api/v1/deals/{deal.pk}/", {"amount": "99.00"}, format="json", HTTP_IF_MATCH='W/"1"')
    assert response.status_code == 412
    deal.refresh_from_db()
    assert deal.amount is None


def test_a_stale_version_in_the_body_is_409(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    services.update_deal(deal=deal, actor=org.rep, title="Changed elsewhere")
    response = rep.patch(f"/api/v1/deals/{deal.pk}/", {"amount": "1.00", "version": 1}, format="json")
    assert response.status_code == 409
    assert rep.patch(f"/api/v1/deals/{deal.pk}/", {"amount": "1.00", "version": 2}, format="json").status_code == 200


def test_put_replaces_the_editable_fields(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, source="web")
    response = rep.put(f"/api/v1/deals/{deal.pk}/", {"title": "Replaced", "source": ""}, format="json")
    assert response.status_code == 200
    assert response.json()["title"] == "Replaced" and response.json()["source"] == ""


def test_stage_cannot_be_changed_by_patch(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    response = rep.patch(f"/api/v1/deals/{deal.pk}/", {"stage": stage(pipeline, "Won").pk}, format="json")
    assert response.status_code == 200 and response.json()["stage"] == deal.stage_id  # read-only, ignored


def test_emptying_a_field_the_current_stage_requires_is_400(rep, org, pipeline):
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    services.move_deal(deal=deal, stage=stage(pipeline, "Proposal"), actor=org.rep)
    response = rep.patch(f"/api/v1/deals/{deal.pk}/", {"amount": None}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["amount"]


# --- Move and history ---------------------------------------------------------------------------------------------


def test_move_returns_the_moved_deal_and_records_history(rep, org, pipeline):
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    proposal = stage(pipeline, "Proposal")
    response = rep.post(f"/api/v1/deals/{deal.pk}/move/", {"stage": proposal.pk}, format="json")
    assert response.status_code == 200
    assert response.json()["stage"] == proposal.pk and response.json()["version"] == 2
    assert response.json()["forecast_category"] == "best_case"
    history = rep.get(f"/api/v1/deals/{deal.pk}/history/").json()
    assert len(history["results"]) == 2
    assert history["results"][-1] | {"changed_at": None, "id": None} == {
        "id": None,
        "from_stage": deal.stage_id,
        "to_stage": proposal.pk,
        "changed_by": org.rep.pk,
        "changed_at": None,
    }


def test_move_names_every_missing_required_field(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    response = rep.post(f"/api/v1/deals/{deal.pk}/move/", {"stage": stage(pipeline, "Negotiation").pk}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"amount", "expected_close_date", "contact"}
    assert "Amount is required" in body["amount"][0]


def test_move_fills_required_fields_in_the_same_step(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    contact = services.create_contact(actor=org.rep, last_name="Buyer")
    body = {"stage": stage(pipeline, "Proposal").pk, "amount": "500.00", "expected_close_date": "2027-01-31"}
    response = rep.post(f"/api/v1/deals/{deal.pk}/move/", body | {"contact": contact.pk}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["amount"] == "500.00" and response.json()["contact"] == contact.pk


def test_losing_needs_a_reason(rep, org, pipeline, lost_reason):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    lost = stage(pipeline, "Lost")
    response = rep.post(f"/api/v1/deals/{deal.pk}/move/", {"stage": lost.pk}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["lost_reason"]
    inactive = make_lost_reason("Retired", is_active=False)
    response = rep.post(f"/api/v1/deals/{deal.pk}/move/", {"stage": lost.pk, "lost_reason": inactive.pk}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["lost_reason"]
    response = rep.post(
        f"/api/v1/deals/{deal.pk}/move/", {"stage": lost.pk, "lost_reason": lost_reason.pk}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "lost" and response.json()["closed_at"] is not None


def test_move_to_a_stage_of_another_pipeline_is_400(rep, org, pipeline, other_pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    response = rep.post(f"/api/v1/deals/{deal.pk}/move/", {"stage": stage(other_pipeline, "Won").pk}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["stage"]


def test_move_honours_if_match_and_body_version(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    qualification = stage(pipeline, "Qualification").pk
    url = f"/api/v1/deals/{deal.pk}/move/"
    assert rep.post(url, {"stage": qualification}, format="json", HTTP_IF_MATCH='W/"5"').status_code == 412
    assert rep.post(url, {"stage": qualification, "version": 5}, format="json").status_code == 409
    assert rep.post(url, {"stage": qualification}, format="json", HTTP_IF_MATCH='W/"1"').status_code == 200


def test_malformed_json_is_400_not_500(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    response = rep.post(f"/api/v1/deals/{deal.pk}/move/", "{not json", content_type="application/json")
    assert response.status_code == 400 and "detail" in response.json()
    response = rep.post("/api/v1/deals/", "[1, 2]", content_type="application/json")
    assert response.status_code == 400 and "non_field_errors" in response.json()
