"""The GIN index of Message.search, on PostgreSQL only (SQLite has no full-text search; the
embedded default falls back to icontains)."""

from django.db import migrations

INDEX = "messaging_message_search_gin"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON messaging_message USING gin (search)")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("messaging", "0001_initial")]
    operations = [migrations.RunPython(create, drop, elidable=False)]
