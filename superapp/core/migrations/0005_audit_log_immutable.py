"""PostgreSQL trigger keeping the audit log append-only, whatever code writes to it.

UPDATE and DELETE are refused, with one exception: the update Django makes for
``on_delete=SET_NULL`` when an actor's account is deleted (only ``actor_id`` becomes NULL; the
copied username keeps naming them). TRUNCATE (test teardown) does not fire row triggers.

SQLite (the embedded demo) gets no trigger; the admin is read-only there too.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION core_auditlogentry_immutable() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.actor_id IS NOT NULL AND NEW.actor_id IS NULL
       AND (to_jsonb(NEW) - 'actor_id') = (to_jsonb(OLD) - 'actor_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit log entries are immutable (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER core_auditlogentry_immutable BEFORE UPDATE OR DELETE ON core_auditlogentry
    FOR EACH ROW EXECUTE FUNCTION core_auditlogentry_immutable();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS core_auditlogentry_immutable ON core_auditlogentry;
DROP FUNCTION IF EXISTS core_auditlogentry_immutable();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("core", "0004_webhooks_and_audit_log")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
