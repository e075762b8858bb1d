"""The planner's estimate of a searched word comes from a histogram of 300 search texts, not 100. With 100, how many
deals a word matches was guessed from the one to five of them it happened to match: `austin` (50,051 deals of L)
was estimated at 10,099, 20,206 and 50,511 by three ANALYZEs of the same rows, and the low guesses made a rep's
and a manager's searched page a bitmap of every deal the word matches, sorted (24 and 34 ms), instead of a walk of
their deals newest first testing each (3 and 7 ms). With 300: 46,823-56,856. ANALYZE of the deal table samples
90,000 rows instead of 30,000 (0.5 → 1.5 s on L); it is run here so that the estimate holds from now on, not from
the next automatic one."""

from django.db import migrations

SEARCH_STATISTICS = 300


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0029_deal_owner_stage_updated_index")]

    operations = [
        migrations.RunSQL(
            f"ALTER INDEX deal_search_trgm_idx ALTER COLUMN 1 SET STATISTICS {SEARCH_STATISTICS}",
            reverse_sql="ALTER INDEX deal_search_trgm_idx ALTER COLUMN 1 SET STATISTICS -1",
        ),
        migrations.RunSQL("ANALYZE pipeline_deal", reverse_sql=migrations.RunSQL.noop),
    ]
