"""Contract of /api/v1/leads/ (with convert) and /api/v1/activities/ (with complete)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pipeline import services
from pipeline.models import Lead
from tests.api.conftest import client_for
from tests.factories import make_deal

pytestmark = pytest.mark.django_db


@pytest.fixture
def rep(org):
    return client_for(org.rep)


def ids_of(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


# --- Leads --------------------------------------------------------------------------------------------------------


def test_create_lead_in_a_status_stamps_the_path(rep, org):
    response = rep.post("/api/v1/leads/", {"last_name": "Lovelace", "status": "mql", "email": ""}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["owner"] == org.rep.pk and body["status"] == "mql"
    assert body["contacted_at"] is not None and body["mql_at"] is not None and body["sql_at"] is None
    assert response["ETag"].startswith('W/"')


def test_a_new_lead_cannot_be_created_converted(rep):
    response = rep.post("/api/v1/leads/", {"last_name": "X", "status": "converted"}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["status"]


def test_lead_status_is_read_only_after_creation(rep, org):
    lead = services.create_lead(actor=org.rep, last_name="L")
    response = rep.patch(f"/api/v1/leads/{lead.pk}/", {"status": "sql", "score": 80}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "new" and response.json()["score"] == 80


def test_lead_if_match_uses_the_representation_etag(rep, org):
    lead = services.create_lead(actor=org.rep, last_name="L")
    etag = rep.get(f"/api/v1/leads/{lead.pk}/")["ETag"]
    first = rep.patch(f"/api/v1/leads/{lead.pk}/", {"score": 10}, format="json", HTTP_IF_MATCH=etag)
    assert first.status_code == 200 and first["ETag"] != etag
    second = rep.patch(f"/api/v1/leads/{lead.pk}/", {"score": 20}, format="json", HTTP_IF_MATCH=etag)
    assert second.status_code == 412


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=sql", {"qualified"}),
        ("source=webinar", {"qualified"}),
        ("owner={teammate}", {"teammate's"}),
        ("external_id=L-1", {"new"}),
        ("created_before={yesterday}", {"old"}),
        ("created_after={yesterday}&owner={rep}", {"new", "qualified"}),
        ("search=lovelace", {"new"}),
    ],
)
def test_lead_filters(org, query, expected):
    yesterday = timezone.now() - timedelta(days=1)
    leads = {
        "new": services.create_lead(actor=org.rep, last_name="Lovelace", external_id="L-1"),
        "qualified": services.create_lead(actor=org.rep, last_name="Q", status="sql", source="webinar"),
        "old": services.create_lead(actor=org.rep, last_name="Old", created_at=yesterday - timedelta(days=3)),
        "teammate's": services.create_lead(actor=org.teammate, last_name="T"),
    }
    values = {"teammate": org.teammate.pk, "rep": org.rep.pk, "yesterday": yesterday.date().isoformat()}
    listed = ids_of(client_for(org.manager).get(f"/api/v1/leads/?{query.format(**values)}"))
    assert listed == {leads[name].pk for name in expected}


def test_convert_creates_the_deal_organization_and_contact(rep, org, pipeline):
    lead = services.create_lead(actor=org.rep, last_name="Hopper", company="Navy", status="sql", source="event")
    response = rep.post(f"/api/v1/leads/{lead.pk}/convert/", {"amount": "800.00"}, format="json")
    assert response.status_code == 201, response.content
    deal = response.json()
    assert deal["title"] == "Navy" and deal["source"] == "event" and deal["amount"] == "800.00"
    assert deal["organization"] is not None and deal["contact"] is not None and deal["pipeline"] == pipeline.pk
    lead = rep.get(f"/api/v1/leads/{lead.pk}/").json()
    assert lead["status"] == "converted" and lead["deal"] == deal["id"]
    again = rep.post(f"/api/v1/leads/{lead['id']}/convert/", {}, format="json")
    assert again.status_code == 400 and list(again.json()) == ["status"]


def test_convert_honours_if_match(rep, org, pipeline):
    lead = services.create_lead(actor=org.rep, last_name="L")
    response = rep.post(f"/api/v1/leads/{lead.pk}/convert/", {}, format="json", HTTP_IF_MATCH='W/"stale"')
    assert response.status_code == 412
    assert Lead.objects.get(pk=lead.pk).status == "new"


# --- Activities ---------------------------------------------------------------------------------------------------


def test_log_a_call_on_a_deal_done_now(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    response = rep.post("/api/v1/activities/", {"kind": "call", "subject": "Intro", "deal": deal.pk}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["done_at"] is not None and body["owner"] == org.rep.pk and body["lead"] is None


def test_a_rep_cannot_take_over_an_activity_someone_else_logged_on_their_deal(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    theirs = services.log_activity(actor=org.manager, kind="call", subject="Coaching call", deal=deal)

    response = rep.patch(f"/api/v1/activities/{theirs.pk}/", {"owner": org.rep.pk}, format="json")

    assert response.status_code == 400 and list(response.json()) == ["owner"]
    theirs.refresh_from_db()
    assert theirs.owner == org.manager


def test_a_manager_may_hand_an_activity_on_their_teams_deal_to_a_member(org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    activity = services.log_activity(actor=org.manager, kind="call", subject="Coaching call", deal=deal)

    response = client_for(org.manager).patch(f"/api/v1/activities/{activity.pk}/", {"owner": org.rep.pk}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["owner"] == org.rep.pk


def test_an_activity_needs_exactly_one_deal_or_lead(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    lead = services.create_lead(actor=org.rep, last_name="L")
    both = {"kind": "call", "subject": "S", "deal": deal.pk, "lead": lead.pk}
    assert rep.post("/api/v1/activities/", both, format="json").status_code == 400
    assert rep.post("/api/v1/activities/", {"kind": "call", "subject": "S"}, format="json").status_code == 400


def test_plan_then_complete_an_activity(rep, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    due = "2030-05-01T10:00:00Z"
    planned = rep.post(
        "/api/v1/activities/", {"kind": "task", "subject": "Follow up", "deal": deal.pk, "due_at": due}, format="json"
    ).json()
    assert planned["done_at"] is None
    response = rep.post(f"/api/v1/activities/{planned['id']}/complete/")
    assert response.status_code == 200 and response.json()["done_at"] is not None
    assert rep.post(f"/api/v1/activities/{planned['id']}/complete/").json() == response.json()  # idempotent


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("done=false", {"planned"}),
        ("done=true", {"call", "email"}),
        ("kind=email", {"email"}),
        ("deal={deal}", {"call", "planned"}),
        ("lead={lead}", {"email"}),
        ("due_after=2030-01-01T00:00:00Z", {"planned"}),
        ("due_before=2030-01-01T00:00:00Z", set()),
        ("owner={rep}&search=intro", {"call"}),
    ],
)
def test_activity_filters(org, pipeline, query, expected):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    lead = services.create_lead(actor=org.rep, last_name="L")
    activities = {
        "call": services.log_activity(actor=org.rep, kind="call", subject="Intro", deal=deal),
        "email": services.log_activity(actor=org.rep, kind="email", subject="Offer", lead=lead),
        "planned": services.log_activity(
            actor=org.rep, kind="task", subject="Next", deal=deal, due_at="2030-06-01T00:00:00Z"
        ),
    }
    values = {"deal": deal.pk, "lead": lead.pk, "rep": org.rep.pk}
    listed = ids_of(client_for(org.rep).get(f"/api/v1/activities/?{query.format(**values)}"))
    assert listed == {activities[name].pk for name in expected}


def test_lead_status_moves_forwards_and_to_disqualified_with_a_reason(rep, org):
    lead = services.create_lead(actor=org.rep, last_name="L")
    response = rep.post(f"/api/v1/leads/{lead.pk}/status/", {"status": "sql"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "sql" and response.json()["mql_at"] is not None
    response = rep.post(
        f"/api/v1/leads/{lead.pk}/status/", {"status": "disqualified", "reason": "No budget"}, format="json"
    )
    assert response.json()["status"] == "disqualified" and response.json()["disqualified_reason"] == "No budget"


def test_lead_status_cannot_be_set_to_converted(rep, org):
    lead = services.create_lead(actor=org.rep, last_name="L")
    response = rep.post(f"/api/v1/leads/{lead.pk}/status/", {"status": "converted"}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["status"]
