"""SPEC §4 and §7: a value the database refuses although validation let it through (out of range, too long, not a
valid date: a DataError, not an IntegrityError) is a 400 naming the field, never a 500 and never half a write, in
single writes, in batches (per item) and in CSV imports (per row)."""

import pytest
from django.db import connection

from config.api import WRITE_CONFLICT
from pipeline.models import Deal, Organization, StageChange
from tests.api.conftest import client_for
from tests.factories import make_deal

pytestmark = pytest.mark.django_db

REFUSED = "refused-by-the-database"


@pytest.fixture
def database_refuses():
    """`database_refuses(table, column)`: from now on, in this test's transaction, the database refuses as out of
    range every row of `table` whose `column` is REFUSED, as PostgreSQL refuses a numeric, text or date value its
    column cannot hold; our validation knows nothing of it. With `error`, it refuses it with that SQLSTATE's name."""

    def install(table: str, column: str, error: str = "numeric_value_out_of_range") -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                CREATE FUNCTION refuse_test_value() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.{column} = '{REFUSED}' THEN
                        RAISE EXCEPTION 'value out of range for this column'
                            USING ERRCODE = '{error}', COLUMN = '{column}';
                    END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER refuse_test_value BEFORE INSERT OR UPDATE ON {table}
                    FOR EACH ROW EXECUTE FUNCTION refuse_test_value();
                """
            )

    return install


def test_a_write_a_concurrent_one_made_impossible_is_a_409_and_writes_nothing(org, pipeline, database_refuses):
    # As the database refuses a deal whose organization a concurrent writer deleted after the serializer found it.
    database_refuses("pipeline_deal", "source", error="foreign_key_violation")
    response = client_for(org.rep).post("/api/v1/deals/", {"title": "New", "source": REFUSED}, format="json")
    assert response.status_code == 409, response.content
    assert response.json() == {"detail": WRITE_CONFLICT}
    assert not Deal.objects.exists() and not StageChange.objects.exists()


def batch(client, kind: str, items, **body):
    response = client.post(f"/api/v1/{kind}/batch/", {"items": items, **body}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_single_create_and_update_refused_by_the_database_are_400s_naming_the_field(org, pipeline, database_refuses):
    database_refuses("pipeline_deal", "source")
    client = client_for(org.rep)
    created = client.post("/api/v1/deals/", {"title": "New", "source": REFUSED}, format="json")
    assert created.status_code == 400, created.content
    assert list(created.json()) == ["source"] and "refused" in created.json()["source"][0]
    assert not Deal.objects.exists() and not StageChange.objects.exists()

    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Kept", source="web")
    updated = client.patch(f"/api/v1/deals/{deal.pk}/", {"source": REFUSED}, format="json")
    assert updated.status_code == 400, updated.content
    assert list(updated.json()) == ["source"]
    deal.refresh_from_db()
    assert (deal.source, deal.version) == ("web", 1)


def test_a_deal_batch_refuses_only_the_items_the_database_refuses_with_a_400_each(org, pipeline, database_refuses):
    existing = make_deal(owner=org.rep, pipeline=pipeline, title="Existing", external_id="d-0", source="web")
    database_refuses("pipeline_deal", "source")
    body = batch(
        client_for(org.rep),
        "deals",
        [
            {"external_id": "d-1", "title": "Fine"},
            {"external_id": "d-2", "title": "Refused", "source": REFUSED},
            {"external_id": "d-0", "source": REFUSED},
            {"external_id": "d-3", "title": "Also fine"},
        ],
    )
    assert [item["status"] for item in body["items"]] == [201, 400, 400, 201]
    assert body["items"][1]["id"] is None and body["items"][2]["id"] == existing.pk
    for refused in body["items"][1:3]:
        assert list(refused["errors"]) == ["source"] and "refused" in refused["errors"]["source"][0]
    assert set(Deal.objects.values_list("external_id", flat=True)) == {"d-0", "d-1", "d-3"}
    existing.refresh_from_db()
    assert (existing.source, existing.version) == ("web", 1)
    # The refused creation left no first stage change behind either.
    assert StageChange.objects.filter(deal__external_id__in=["d-1", "d-3"]).count() == 2
    assert StageChange.objects.count() == 3


def test_an_all_or_none_batch_with_an_item_the_database_refuses_writes_nothing(org, pipeline, database_refuses):
    database_refuses("pipeline_deal", "source")
    body = batch(
        client_for(org.rep),
        "deals",
        [{"title": "Fine"}, {"title": "Refused", "source": REFUSED}],
        all_or_none=True,
    )
    assert body["rolled_back"] is True
    assert [item["status"] for item in body["items"]] == [424, 400]
    assert not Deal.objects.exists() and not StageChange.objects.exists()


def test_a_batch_of_organizations_refuses_the_item_the_database_refuses(org, database_refuses):
    database_refuses("pipeline_organization", "industry")
    body = batch(
        client_for(org.rep),
        "organizations",
        [{"name": "Fine"}, {"name": "Refused", "industry": REFUSED}, {"name": "Fine too"}],
    )
    assert [item["status"] for item in body["items"]] == [201, 400, 201]
    assert list(body["items"][1]["errors"]) == ["industry"]
    assert sorted(Organization.objects.values_list("name", flat=True)) == ["Fine", "Fine too"]
