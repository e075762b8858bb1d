from django.db import migrations

FORWARD = """
CREATE FUNCTION pipeline_auditentry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: an AuditEntry is never updated or deleted'
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER auditentry_append_only
    BEFORE UPDATE OR DELETE ON pipeline_auditentry
    FOR EACH ROW EXECUTE FUNCTION pipeline_auditentry_append_only();
"""

BACKWARD = """
DROP TRIGGER auditentry_append_only ON pipeline_auditentry;
DROP FUNCTION pipeline_auditentry_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0003_audit_trail")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
