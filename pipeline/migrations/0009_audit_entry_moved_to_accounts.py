"""AuditEntry now lives in accounts (accounts 0004): forget it in pipeline's state only, keeping its table, the
append-only trigger on it (0004) and its rows."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("pipeline", "0008_board_column_index"),
        ("accounts", "0004_audit_entry_moved_from_pipeline"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AuditEntry")], database_operations=[]
        ),
    ]
