"""The version of the tables the pages' pick lists are made of, set anew by a trigger on each (pipeline.pick_lists)."""

from django.db import migrations

from pipeline import pick_lists


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0026_deal_search_text"), ("accounts", "0005_idempotent_requests")]

    operations = [migrations.RunSQL(pick_lists.TRIGGERS_SQL, pick_lists.DROP_TRIGGERS_SQL)]
