"""AuditEntry moves from pipeline to accounts, in Django's state only: its table `pipeline_auditentry`, the
append-only trigger on it (pipeline 0004) and its rows stay as they are. pipeline 0009 drops it from pipeline's state.
"""

import django.core.serializers.json
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_failed_token_attempts"),
        ("contenttypes", "0002_remove_content_type_name"),
        # The table and its trigger were created there.
        ("pipeline", "0008_board_column_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditEntry",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("at", models.DateTimeField(default=django.utils.timezone.now)),
                        (
                            "action",
                            models.CharField(
                                choices=[
                                    ("created", "Created"),
                                    ("updated", "Updated"),
                                    ("stage_changed", "Stage changed"),
                                    ("status_changed", "Status changed"),
                                    ("converted", "Converted"),
                                    ("deleted", "Deleted"),
                                ],
                                max_length=16,
                            ),
                        ),
                        ("object_id", models.BigIntegerField()),
                        ("object_repr", models.CharField(max_length=200)),
                        (
                            "changes",
                            models.JSONField(default=dict, encoder=django.core.serializers.json.DjangoJSONEncoder),
                        ),
                        (
                            "actor",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "content_type",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="contenttypes.contenttype",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "pipeline_auditentry",
                        "verbose_name_plural": "audit entries",
                        "ordering": ["-at", "-id"],
                        "indexes": [
                            models.Index(fields=["content_type", "object_id", "at"], name="audit_object_time_idx")
                        ],
                        "constraints": [
                            models.CheckConstraint(
                                condition=models.Q(
                                    (
                                        "action__in",
                                        [
                                            "created",
                                            "updated",
                                            "stage_changed",
                                            "status_changed",
                                            "converted",
                                            "deleted",
                                        ],
                                    )
                                ),
                                name="audit_action_valid",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
