"""A partial expression index for the recall purge's reference check ("does a message that is
not recalled still carry this media_id?", ``media.attachment_referenced``), on PostgreSQL only
like 0002 (SQLite, the embedded default, scans). Only media messages that are not recalled are
in it, so it stays small beside a large message table. Built CONCURRENTLY (hence a non-atomic
migration) so that sends are not blocked while it is built; if a concurrent build is interrupted,
drop the INVALID index and migrate again."""

from django.db import migrations

INDEX = "messaging_message_media_ref"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON messaging_message "
            "((content ->> 'media_id')) "
            "WHERE recalled_at IS NULL AND (content ->> 'media_id') IS NOT NULL"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("messaging", "0003_payment_message_kinds")]
    operations = [migrations.RunPython(create, drop, elidable=False)]
