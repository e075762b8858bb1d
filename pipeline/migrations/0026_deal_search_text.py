"""The deal search reads one column (issue 21): `Deal.search_text`, kept by triggers (pipeline.search_text) and
back-filled here, with one trigram index in place of the title's and the external id's.

On L the back-fill rewrites a million deals: about 4.5 minutes on the bench machine, most of it the deal table's
other indexes taking the new row versions. The deals stay readable meanwhile; their writes wait for it."""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import migrations, models
from django.db.models.functions import Upper

from pipeline import search_text


def back_fill(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        search_text.restamp_search_text(cursor)


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0025_deal_owner_updated_index")]

    operations = [
        migrations.AddField(
            model_name="deal",
            name="search_text",
            field=models.TextField(db_default="", editable=False),
        ),
        migrations.RunSQL(search_text.TRIGGERS_SQL, search_text.DROP_TRIGGERS_SQL),
        # Before the back-fill, and the new index after it: fewer indexes to take a million new row versions.
        migrations.RemoveIndex(model_name="deal", name="deal_title_trgm_idx"),
        migrations.RemoveIndex(model_name="deal", name="deal_extid_trgm_idx"),
        migrations.RunPython(back_fill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="deal",
            index=GinIndex(OpClass(Upper("search_text"), name="gin_trgm_ops"), name="deal_search_trgm_idx"),
        ),
    ]
