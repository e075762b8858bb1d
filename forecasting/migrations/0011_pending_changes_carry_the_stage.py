"""A deal's stage and forecast category in its pending images, so that a refresh applies a change to the forecast
as the difference of the images (`forecasting.metrics.forecast_differences`) instead of recomputing its periods."""

from django.db import migrations, models

from forecasting import changes


class Migration(migrations.Migration):
    dependencies = [
        ("forecasting", "0010_stale_totals"),
    ]

    operations = [
        migrations.AddField(
            model_name="pendingchange",
            name="stage_id",
            field=models.BigIntegerField(null=True),
        ),
        migrations.AddField(
            model_name="pendingchange",
            name="forecast_category",
            field=models.CharField(max_length=16, null=True),
        ),
        migrations.RunSQL(
            changes.deal_changes_function(with_touch=True, with_stage=True),
            changes.deal_changes_function(with_touch=True),
        ),
    ]
