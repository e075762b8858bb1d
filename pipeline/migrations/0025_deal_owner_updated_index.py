"""A rep's or a manager's searched deal list (issue 21): their deals newest first, from which the planner takes a
page while testing the words on each row, instead of reading every deal a common word matches. Built CONCURRENTLY,
as the indexes of 0023, so that the deal table keeps taking writes."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [("pipeline", "0024_dealstate_waterfall_indexes")]

    operations = [
        AddIndexConcurrently(
            model_name="deal",
            index=models.Index(fields=["owner", "-updated_at", "-id"], name="deal_owner_updated_idx"),
        ),
    ]
