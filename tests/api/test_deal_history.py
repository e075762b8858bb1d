"""The deal list as of an instant (`?as_of=`) and a deal's field changes (`/deals/{id}/changes/`)."""

from datetime import timedelta
from decimal import Decimal
from urllib.parse import quote

import pytest
from django.db import connection
from django.utils import timezone

from pipeline import services
from tests.api.conftest import client_for
from tests.factories import make_qualified_deal, stage

pytestmark = pytest.mark.django_db


def clock():
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


@pytest.fixture
def story(org, pipeline):
    """A deal at $12,500 in Prospecting at `before`, then $15,000, owned by the teammate, in Proposal."""
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("12500"))
    before = clock()
    deal = services.update_deal(deal=deal, actor=org.manager, amount=Decimal("15000"))
    deal = services.move_deal(deal=deal, stage=stage(pipeline, "Proposal"), actor=org.rep)
    deal = services.update_deal(deal=deal, actor=org.manager, owner=org.teammate)
    return deal, before


def deals(client, query: str):
    response = client.get(f"/api/v1/deals/?{query}")
    assert response.status_code == 200, response.content
    return {row["id"]: row for row in response.json()["results"]}


def test_the_list_as_of_an_instant_shows_the_deals_as_they_stood(org, pipeline, story):
    deal, before = story
    client = client_for(org.manager)
    then = deals(client, f"as_of={quote(before.isoformat())}")[deal.pk]
    assert (then["amount"], then["stage"], then["owner"], then["forecast_category"]) == (
        "12500.00",
        stage(pipeline, "Prospecting").pk,
        org.rep.pk,
        "pipeline",
    )
    assert then["title"] == deal.title  # what the history does not keep is today's
    now = deals(client, "")[deal.pk]
    assert (now["amount"], now["owner"]) == ("15000.00", org.teammate.pk)


@pytest.mark.parametrize(
    ("filters", "listed_then", "listed_now"),
    [
        ("amount_max=13000", True, False),
        ("amount_min=14000", False, True),
        ("stage={prospecting}", True, False),
        ("stage={proposal}", False, True),
        ("owner={rep}", True, False),
        ("owner={teammate}", False, True),
        ("status=open&pipeline={pipeline}", True, True),
    ],
)
def test_the_filters_read_the_state_of_the_instant(org, pipeline, story, filters, listed_then, listed_now):
    deal, before = story
    filters = filters.format(
        prospecting=stage(pipeline, "Prospecting").pk,
        proposal=stage(pipeline, "Proposal").pk,
        rep=org.rep.pk,
        teammate=org.teammate.pk,
        pipeline=pipeline.pk,
    )
    client = client_for(org.admin)
    assert (deal.pk in deals(client, f"as_of={quote(before.isoformat())}&{filters}")) is listed_then
    assert (deal.pk in deals(client, filters)) is listed_now


def test_a_deal_created_after_the_instant_is_not_listed(org, pipeline, story):
    deal, before = story
    later = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    listed = deals(client_for(org.admin), f"as_of={quote(clock().isoformat())}")
    assert deal.pk in listed and later.pk in listed
    assert later.pk not in deals(client_for(org.admin), f"as_of={quote(before.isoformat())}")


@pytest.mark.parametrize(
    ("as_of", "message"),
    [
        (lambda: "not-a-time", "Enter a valid date/time."),
        (lambda: (timezone.now() + timedelta(hours=1)).isoformat(), "in the future"),
        (lambda: "2001-01-01T00:00:00Z", "before the recorded history"),
    ],
)
def test_an_instant_in_the_future_before_the_history_or_malformed_is_refused(org, story, as_of, message):
    response = client_for(org.admin).get(f"/api/v1/deals/?as_of={quote(as_of())}")
    assert response.status_code == 400
    assert list(response.json()) == ["as_of"]
    assert message in response.json()["as_of"][0]


def test_as_of_is_refused_before_anything_is_recorded(org):
    response = client_for(org.admin).get(f"/api/v1/deals/?as_of={quote(timezone.now().isoformat())}")
    assert response.status_code == 400
    assert "nothing is recorded yet" in response.json()["as_of"][0]


def test_the_changes_of_a_deal_one_row_per_field_newest_first(org, pipeline, story):
    deal, _before = story
    response = client_for(org.manager).get(f"/api/v1/deals/{deal.pk}/changes/")
    assert response.status_code == 200
    rows = [{key: row[key] for key in ("field", "old", "new", "by")} for row in response.json()["results"]]
    assert rows == [
        {"field": "owner", "old": org.rep.pk, "new": org.teammate.pk, "by": org.manager.pk},
        {"field": "forecast_category", "old": "pipeline", "new": "best_case", "by": org.rep.pk},
        {
            "field": "stage",
            "old": stage(pipeline, "Prospecting").pk,
            "new": stage(pipeline, "Proposal").pk,
            "by": org.rep.pk,
        },
        {"field": "amount", "old": "12500.00", "new": "15000.00", "by": org.manager.pk},
    ]
    times = [row["at"] for row in response.json()["results"]]
    assert times == sorted(times, reverse=True)


def test_a_raw_sql_update_is_recorded_without_an_author(org, pipeline, story):
    deal, _before = story
    with connection.cursor() as cursor:
        cursor.execute("UPDATE pipeline_deal SET expected_close_date = '2027-06-30' WHERE id = %s", [deal.pk])
    [latest, *_] = client_for(org.admin).get(f"/api/v1/deals/{deal.pk}/changes/").json()["results"]
    assert (latest["field"], latest["old"], latest["new"], latest["by"]) == (
        "expected_close_date",
        "2026-12-31",
        "2027-06-30",
        None,
    )


def test_the_schema_documents_as_of_and_the_changes(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    listing = schema["paths"]["/api/v1/deals/"]["get"]
    [as_of] = [parameter for parameter in listing["parameters"] if parameter["name"] == "as_of"]
    assert as_of["schema"] == {"type": "string", "format": "date-time"} and "400" in as_of["description"]
    assert "400" in listing["responses"]
    changes = schema["paths"]["/api/v1/deals/{id}/changes/"]["get"]
    page = changes["responses"]["200"]["content"]["application/json"]["schema"]
    assert page == {"$ref": "#/components/schemas/PaginatedDealChangeList"}
    row = schema["components"]["schemas"]["DealChange"]["properties"]
    assert set(row) == {"field", "old", "new", "by", "at"}
    assert schema["components"]["schemas"]["DealChangeFieldEnum"]["enum"][:3] == ["stage", "owner", "amount"]
