"""Trigram indexes for search (issue 21 item 2): `pg_trgm`, and a GIN index on UPPER(column) of every column the
searches compare with `icontains` (pipeline.search), built CONCURRENTLY so that a big table keeps taking writes.
Reversing drops the indexes, then the extension."""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently, TrigramExtension
from django.db import migrations
from django.db.models.functions import Upper

COLUMNS = [
    ("contact", "first_name", "contact_first_name_trgm_idx"),
    ("contact", "last_name", "contact_last_name_trgm_idx"),
    ("contact", "email", "contact_email_trgm_idx"),
    ("contact", "external_id", "contact_extid_trgm_idx"),
    ("deal", "title", "deal_title_trgm_idx"),
    ("deal", "external_id", "deal_extid_trgm_idx"),
    ("organization", "name", "organization_name_trgm_idx"),
    ("organization", "website", "organization_website_trgm_idx"),
    ("organization", "external_id", "organization_extid_trgm_idx"),
]


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [("pipeline", "0014_list_order_indexes")]

    operations = [
        TrigramExtension(),
        *(
            AddIndexConcurrently(
                model_name=model, index=GinIndex(OpClass(Upper(column), name="gin_trgm_ops"), name=name)
            )
            for model, column, name in COLUMNS
        ),
    ]
