"""Foreign keys whose column already leads a unique constraint or an index of their table lose
their own single-column index: it served no lookup the other does not, and cost a B-tree insert
on every row written (events, messages, postings, transfers, grabs: the hot writes). Dropped
CONCURRENTLY on PostgreSQL (hence not atomic): superapp.core.migration_ops."""

import django.db.models.deletion
from django.db import migrations, models

from superapp.core.migration_ops import drop_redundant_fk_index


class Migration(migrations.Migration):
    atomic = False
    dependencies = [
        ("messaging", "0004_message_media_ref"),
    ]

    operations = [
        drop_redundant_fk_index(
            "messaging",
            "message",
            "conversation",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="messaging.conversation",
            ),
        ),
    ]
