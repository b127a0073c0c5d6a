"""HiddenMessage's conversation and seq required (0007 filled them in), and indexed by user.

The fill again first, for databases that ran 0007 before it had its trigger (rows inserted since
by older code have no place). Not atomic: the index is built CONCURRENTLY on PostgreSQL, so the
table's readers (history, conversation lists) are not queued behind the build."""

from importlib import import_module

import django.db.models.deletion
from django.db import migrations, models

from superapp.core.migration_ops import add_index_concurrently

fill = import_module("messaging.migrations.0007_hiddenmessage_place").fill


class Migration(migrations.Migration):
    atomic = False
    dependencies = [
        ("messaging", "0007_hiddenmessage_place"),
    ]

    operations = [
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="hiddenmessage",
            name="conversation",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="messaging.conversation",
            ),
        ),
        migrations.AlterField(
            model_name="hiddenmessage",
            name="seq",
            field=models.BigIntegerField(),
        ),
        add_index_concurrently(
            "messaging",
            "hiddenmessage",
            models.Index(fields=["user", "conversation", "seq"], name="messaging_hidden_user_seq"),
        ),
    ]
