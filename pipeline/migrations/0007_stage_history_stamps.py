"""Stamp each stay's exit time and each deal's furthest open stage at write time (see pipeline.stage_history)."""

from django.db import migrations, models

from pipeline import stage_history


def restamp(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        stage_history.restamp_stage_history(cursor)


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0006_webhooks")]

    operations = [
        migrations.AddField(
            model_name="deal",
            name="furthest_open_order",
            field=models.SmallIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="stagechange",
            name="left_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunSQL(stage_history.TRIGGERS_SQL, stage_history.DROP_TRIGGERS_SQL),
        migrations.RunPython(restamp, migrations.RunPython.noop),
    ]
