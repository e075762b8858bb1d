"""The deal table's and the API deal list's indexes (issues 17 and 21): the visibility filter of a manager or a rep
with pipeline, stage and status, and the admin's filters, each holding the amount so that the table's bounded count
and total are read from the index alone; the open deals of an owner by pipeline and stage, for the board's column
totals of a manager or a rep; and autovacuum of the deal table after fewer changes, so that those reads stay
index-only. The indexes are built CONCURRENTLY, as the trigram indexes of 0015, so that the deal table keeps taking
writes while they are built."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [("pipeline", "0022_stage_probability_history")]

    operations = [
        AddIndexConcurrently(
            model_name="deal",
            index=models.Index(
                fields=["owner", "pipeline", "stage", "status"], include=["amount"], name="deal_owner_stage_idx"
            ),
        ),
        AddIndexConcurrently(
            model_name="deal",
            index=models.Index(fields=["pipeline", "stage", "status"], include=["amount"], name="deal_stage_idx"),
        ),
        AddIndexConcurrently(
            model_name="deal",
            index=models.Index(
                fields=["owner", "pipeline", "stage", "-stage_entered_at", "-id"],
                include=["amount"],
                condition=models.Q(status="open"),
                name="deal_open_owner_column_idx",
            ),
        ),
        # Those reads stay index-only while the visibility map marks the table's pages all-visible, which only a
        # VACUUM does. By default autovacuum comes after inserts of a fifth of the table (200,000 deals) or as many
        # changed rows: right after an import of 100,000 deals a manager's count visited 2,013 pages again (85 ms).
        migrations.RunSQL(
            "ALTER TABLE pipeline_deal SET"
            " (autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_vacuum_scale_factor = 0.02)",
            reverse_sql="ALTER TABLE pipeline_deal"
            " RESET (autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_scale_factor)",
        ),
    ]
