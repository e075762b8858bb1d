"""Lost reason names are unique ignoring case, held by the database, refused readably by the service, the API and the
settings page; the migration that adds the rule renames existing case-duplicates and keeps every record."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from pipeline import services
from pipeline.models import LOST_REASON_NAME_TAKEN, LostReason
from tests.api.conftest import client_for


@pytest.mark.django_db
def test_the_database_refuses_a_name_that_differs_only_in_case():
    services.create_lost_reason(actor=None, name="Price")
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("INSERT INTO pipeline_lostreason (name, is_active) VALUES ('PRICE', true)")


@pytest.mark.django_db
def test_the_service_refuses_it_on_the_name_for_a_new_reason_and_a_rename():
    services.create_lost_reason(actor=None, name="Price")
    timing = services.create_lost_reason(actor=None, name="Timing")
    with pytest.raises(ValidationError) as created:
        services.create_lost_reason(actor=None, name="price")
    with pytest.raises(ValidationError) as renamed:
        services.update_lost_reason(lost_reason=timing, actor=None, name=" PRICE".strip())
    assert created.value.message_dict == renamed.value.message_dict == {"name": [LOST_REASON_NAME_TAKEN]}
    assert sorted(LostReason.objects.values_list("name", flat=True)) == ["Price", "Timing"]
    services.update_lost_reason(lost_reason=timing, actor=None, name="TIMING")  # its own name in another case
    assert LostReason.objects.get(pk=timing.pk).name == "TIMING"


@pytest.mark.django_db
def test_the_api_answers_400_on_the_name(org):
    services.create_lost_reason(actor=None, name="Price")
    response = client_for(org.admin).post("/api/v1/lost-reasons/", {"name": "pRiCe"}, format="json")
    assert (response.status_code, response.json()) == (400, {"name": [LOST_REASON_NAME_TAKEN]})


@pytest.mark.django_db(transaction=True)
def test_the_migration_renames_case_duplicates_and_keeps_them_all():
    executor = MigrationExecutor(connection)
    executor.migrate([("pipeline", "0010_deal_field_history")])  # and what depends on it
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO pipeline_lostreason (name, is_active) VALUES"
            " ('Price', true), ('price', true), ('Price (2)', false), ('PRICE', true), ('Timing', true)"
        )
    executor = MigrationExecutor(connection)
    executor.migrate([("pipeline", "0011_lost_reason_names_unique_ignoring_case")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pipeline_lostreason ORDER BY id")
        names = [name for (name,) in cursor.fetchall()]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # the rest of the session runs on the latest schema

    # The oldest keeps its name; later ones get the first free " (n)", checked ignoring case.
    assert names == ["Price", "price (3)", "Price (2)", "PRICE (4)", "Timing"]
