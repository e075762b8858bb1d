"""The visibility index of the deal table and the API list (0023's `deal_owner_stage_idx`) holds `updated_at` too,
so that a manager's or a rep's stage, in the table's default order, picks its page from the index alone. Built
CONCURRENTLY before the old one is dropped, as 0023 built it, so that the deal table keeps taking writes and its
reads keep an index."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [("pipeline", "0028_analyze_after_fewer_changes")]

    operations = [
        AddIndexConcurrently(
            model_name="deal",
            index=models.Index(
                fields=["owner", "pipeline", "stage", "status"],
                include=["amount", "updated_at", "id"],
                name="deal_owner_stage_updated_idx",
            ),
        ),
        RemoveIndexConcurrently(model_name="deal", name="deal_owner_stage_idx"),
    ]
