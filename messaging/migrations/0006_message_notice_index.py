"""A partial index on a conversation's payment notice lines, for exact unread counts
(selectors.hidden_unread). Built CONCURRENTLY on PostgreSQL (hence not atomic), so sends are not
queued behind the build: superapp.core.migration_ops."""

from django.db import migrations, models

from superapp.core.migration_ops import add_index_concurrently


class Migration(migrations.Migration):
    atomic = False
    dependencies = [
        ("messaging", "0005_drop_redundant_fk_indexes"),
    ]

    operations = [
        add_index_concurrently(
            "messaging",
            "message",
            models.Index(
                condition=models.Q(("content__has_key", "message_seq"), ("kind", "system")),
                fields=["conversation", "seq"],
                name="messaging_message_notice",
            ),
        ),
    ]
