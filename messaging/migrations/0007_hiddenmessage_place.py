"""HiddenMessage keeps its message's conversation and seq (unread counts range over them), filled
in for the rows there are. NOT NULL and the index come in 0008.

Not atomic, so that no lock is held across the fill: ``ADD COLUMN`` takes the table's exclusive
lock, and held through one big UPDATE it queued every read of the table (each history page, each
conversation list) for the whole fill. Here each ALTER commits at once and the rows are filled in
batches of their own. On PostgreSQL a trigger fills the two columns of any row inserted without
them first: servers still running the code before this migration (a rolling deploy) insert rows
without them, before and after 0008 (whose NOT NULL would otherwise fail on those rows, or fail
their inserts). Drop the trigger once no server runs that code any more."""

import django.db.models.deletion
from django.db import migrations, models

FILL_BATCH = """
UPDATE messaging_hiddenmessage h SET conversation_id = m.conversation_id, seq = m.seq
  FROM messaging_message m
 WHERE m.id = h.message_id
   AND h.id IN (SELECT id FROM messaging_hiddenmessage
                 WHERE conversation_id IS NULL OR seq IS NULL LIMIT %s)
"""

FILL_SQLITE = """
UPDATE messaging_hiddenmessage SET
    conversation_id = (SELECT m.conversation_id FROM messaging_message m WHERE m.id = message_id),
    seq = (SELECT m.seq FROM messaging_message m WHERE m.id = message_id)
 WHERE conversation_id IS NULL OR seq IS NULL
"""

TRIGGER = """
CREATE OR REPLACE FUNCTION messaging_hiddenmessage_place() RETURNS trigger AS $$
BEGIN
    SELECT m.conversation_id, m.seq INTO NEW.conversation_id, NEW.seq
      FROM messaging_message m WHERE m.id = NEW.message_id;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS messaging_hiddenmessage_place ON messaging_hiddenmessage;
CREATE TRIGGER messaging_hiddenmessage_place BEFORE INSERT ON messaging_hiddenmessage
    FOR EACH ROW WHEN (NEW.conversation_id IS NULL OR NEW.seq IS NULL)
    EXECUTE FUNCTION messaging_hiddenmessage_place();
"""

UNTRIGGER = """
DROP TRIGGER IF EXISTS messaging_hiddenmessage_place ON messaging_hiddenmessage;
DROP FUNCTION IF EXISTS messaging_hiddenmessage_place();
"""

BATCH = 10_000


def fill(apps, schema_editor):
    """Every row without its place gets it (PostgreSQL: batches, each a transaction of its own)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(FILL_SQLITE)
            return
        while True:
            cursor.execute(FILL_BATCH, [BATCH])
            if cursor.rowcount < BATCH:
                return


def trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER)


def untrigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNTRIGGER)


class Migration(migrations.Migration):
    atomic = False
    dependencies = [
        ("messaging", "0006_message_notice_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="hiddenmessage",
            name="conversation",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="messaging.conversation",
            ),
        ),
        migrations.AddField(
            model_name="hiddenmessage",
            name="seq",
            field=models.BigIntegerField(null=True),
        ),
        # Before the fill: a row inserted meanwhile is filled by the trigger, or by the fill.
        migrations.RunPython(trigger, untrigger, elidable=False),
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=False),
    ]
