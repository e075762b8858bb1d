"""The deal field history (pipeline.field_history): its table, the triggers that write it, and a back-fill.

The back-fill reconstructs every existing deal's intervals from its StageChange rows (stage, so status and
pipeline, and who moved it) and its audit entries (owner, amount, currency, expected close date, forecast
category, and who changed them). What it cannot know:
- deals deleted before this migration: they have no history at all (a deal deleted after it keeps its own);
- changes no audit entry recorded (raw SQL, or data loaded in bulk without one): the deal's current value is
  taken as its value since creation, and a difference between the reconstructed last state and the deal row is
  dated at the deal's `updated_at`;
- the state before the first record of a field: a field's value at creation is the "old" side of its first
  recorded change, else its current value; a deal imported with a past `created_at` and no stage history is
  taken to have been in its current stage since then;
- who made a change the trail has no actor for (imports without a user, the system): `changed_by` is null;
- the order of changes recorded at the same instant, and anything about a stage's probability or default
  category over time (stages have no history yet).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from pipeline import field_history


def back_fill(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        field_history.rebuild(cursor)


class Migration(migrations.Migration):
    dependencies = [
        ("pipeline", "0009_audit_entry_moved_to_accounts"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="DealState",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("valid_from", models.DateTimeField()),
                ("valid_to", models.DateTimeField(blank=True, null=True)),
                ("expected_close_date", models.DateField(blank=True, null=True)),
                ("amount", models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True)),
                ("currency", models.CharField(max_length=3)),
                (
                    "forecast_category",
                    models.CharField(
                        choices=[("pipeline", "Pipeline"), ("best_case", "Best case"), ("commit", "Commit")],
                        max_length=16,
                    ),
                ),
                (
                    "changed_by",
                    models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "deal",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        editable=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="states",
                        to="pipeline.deal",
                    ),
                ),
                (
                    "owner",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "stage",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="pipeline.stage",
                    ),
                ),
            ],
            options={
                "ordering": ["deal_id", "valid_from", "id"],
                "indexes": [models.Index(fields=["deal", "valid_from"], name="dealstate_deal_from_idx")],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("valid_to__isnull", True), ("valid_to__gte", models.F("valid_from")), _connector="OR"
                        ),
                        name="dealstate_interval",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("valid_to__isnull", True)), fields=("deal",), name="dealstate_one_open"
                    ),
                ],
            },
        ),
        migrations.RunSQL(field_history.TRIGGERS_SQL, field_history.DROP_TRIGGERS_SQL),
        migrations.RunPython(back_fill, migrations.RunPython.noop),
    ]
