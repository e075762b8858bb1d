"""`GET /api/v1/<records>/{id}/audit/`: the audit trail through the API, read-only and as visible as its record."""

from decimal import Decimal

import pytest

from pipeline import services
from tests.queries import assert_query_count, capture_queries

pytestmark = pytest.mark.django_db


def test_a_deal_audit_lists_who_changed_what_newest_first(api, org, rep_records):
    services.update_deal(deal=rep_records.deal, actor=org.manager, amount=Decimal("15000"))

    response = api("rep").get(f"/api/v1/deals/{rep_records.deal.pk}/audit/")

    assert response.status_code == 200
    latest, *_rest, created = response.json()["results"]
    assert latest["action"] == "updated"
    assert (latest["actor"], latest["actor_name"]) == (org.manager.pk, str(org.manager))
    assert latest["changes"] == {"amount": ["12000.00", "15000.00"]}
    assert created["action"] == "created"


@pytest.mark.parametrize(
    ("role", "expected"),
    [("rep", 200), ("manager", 200), ("admin", 200), ("teammate", 404), ("other_rep", 404), ("other_manager", 404)],
)
@pytest.mark.parametrize("kind", ["deals", "leads", "organizations", "contacts"])
def test_the_audit_trail_is_visible_exactly_when_its_record_is(api, rep_records, role, expected, kind):
    record = getattr(rep_records, kind.removesuffix("s"))

    assert api(role).get(f"/api/v1/{kind}/{record.pk}/audit/").status_code == expected


def test_configuration_audit_is_readable_by_everyone_signed_in(api, org, pipeline):
    stage = pipeline.stages.get(name="Discovery")
    services.update_stage(stage=stage, actor=org.admin, probability=35)

    response = api("rep").get(f"/api/v1/stages/{stage.pk}/audit/")

    assert response.json()["results"][0]["changes"] == {"probability": [40, 35]}
    assert api("anonymous").get(f"/api/v1/stages/{stage.pk}/audit/").status_code == 401


def test_the_audit_trail_cannot_be_written(api, rep_records):
    response = api("admin").post(f"/api/v1/deals/{rep_records.deal.pk}/audit/", {}, format="json")

    assert response.status_code == 405


def test_reading_an_audit_trail_takes_the_same_queries_however_long_it_is(api, org, rep_records):
    client = api("rep")
    path = f"/api/v1/deals/{rep_records.deal.pk}/audit/?page_size=100"
    client.get(path)  # the token's first use of the minute also stamps its last_used_at
    with capture_queries() as short:
        client.get(path)
    for amount in range(20):
        services.update_deal(deal=rep_records.deal, actor=org.rep, amount=Decimal(20000 + amount))
    with capture_queries() as long:
        response = client.get(path)

    assert len(response.json()["results"]) == 21  # created, then 20 updates
    assert_query_count(short, long)
