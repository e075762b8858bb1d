"""Autovacuum analyzes the deal table and its history after fewer changes: with PostgreSQL's default (a tenth of the
table), an evening of imports on L left `pipeline_deal` 202,001 and `pipeline_dealstate` 876,554 changed rows past
their last ANALYZE, and the planner weighed the lists, the waterfall and the as-of reads on the old statistics. An
import of 100,000 deals writes 100,000 of each; at 0.02 of L's tables that is an analysis after about 20,000 deals and
80,000 intervals. The history also gets the deal table's vacuum after inserts (0023), so that the waterfall's
index-only reads of a fresh import stay index-only."""

from django.db import migrations

DEAL = "autovacuum_analyze_scale_factor = 0.02"
HISTORY = "autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02"


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0027_pick_list_version")]

    operations = [
        migrations.RunSQL(
            f"ALTER TABLE pipeline_deal SET ({DEAL})",
            reverse_sql="ALTER TABLE pipeline_deal RESET (autovacuum_analyze_scale_factor)",
        ),
        migrations.RunSQL(
            f"ALTER TABLE pipeline_dealstate SET ({HISTORY})",
            reverse_sql="ALTER TABLE pipeline_dealstate"
            " RESET (autovacuum_analyze_scale_factor, autovacuum_vacuum_insert_scale_factor)",
        ),
    ]
