"""The dashboard's stalest deals read from an index: the first twelve of a run's stale deals by days in their stage,
where PostgreSQL read and sorted all 63,000 of L's (127 ms of the admin's dashboard). Built CONCURRENTLY, as
pipeline 0029's, so that a recompute writing its rows meanwhile is not held up."""

import django.db.models.fields.json
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [("forecasting", "0011_pending_changes_carry_the_stage")]

    operations = [
        AddIndexConcurrently(
            model_name="metricsnapshot",
            index=models.Index(
                models.F("run"),
                models.F("group_kind"),
                models.OrderBy(
                    django.db.models.fields.json.KeyTransform("days_in_stage", "values"),
                    descending=True,
                    nulls_last=True,
                ),
                models.F("deal_id"),
                condition=models.Q(("metric", "stale")),
                name="metricsnapshot_stalest_idx",
            ),
        ),
    ]
