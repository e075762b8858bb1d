"""Rotting by inactivity: each deal's last touch, stamped by triggers (pipeline.touches), back-filled here."""

import django.db.models.functions.datetime
from django.db import migrations, models

from pipeline import touches


def back_fill(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        touches.restamp_last_touched(cursor)


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0019_saved_deal_view")]

    operations = [
        migrations.AddField(
            model_name="deal",
            name="last_touched_at",
            field=models.DateTimeField(db_default=django.db.models.functions.datetime.Now(), editable=False),
        ),
        # Before the triggers, so the back-fill's own UPDATE is not taken for an edit.
        migrations.RunPython(back_fill, migrations.RunPython.noop),
        migrations.RunSQL(touches.TRIGGERS_SQL, touches.DROP_TRIGGERS_SQL),
        migrations.AddIndex(
            model_name="deal",
            index=models.Index(fields=["status", "last_touched_at"], name="deal_last_touch_idx"),
        ),
    ]
