"""Rotting by inactivity: a deal's last touch moving (pipeline 0020) is a change the stale deals' refresh reads."""

from django.db import migrations

from forecasting import changes


class Migration(migrations.Migration):
    dependencies = [
        ("forecasting", "0007_call_trend_points"),
        ("pipeline", "0020_deal_last_touched"),
    ]

    operations = [
        migrations.RunSQL(
            changes.deal_changes_function(with_touch=True), changes.deal_changes_function(with_touch=False)
        ),
    ]
