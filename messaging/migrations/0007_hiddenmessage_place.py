"""HiddenMessage keeps its message's conversation and seq (unread counts range over them), filled
in for the rows there are. NOT NULL and the index come in 0008: PostgreSQL refuses to alter a
table with the foreign key checks this update leaves pending in the same transaction."""

import django.db.models.deletion
from django.db import migrations, models

FILL = """
UPDATE messaging_hiddenmessage SET
    conversation_id = (SELECT m.conversation_id FROM messaging_message m WHERE m.id = message_id),
    seq = (SELECT m.seq FROM messaging_message m WHERE m.id = message_id)
"""


class Migration(migrations.Migration):
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
        migrations.RunSQL(FILL, migrations.RunSQL.noop, elidable=False),
    ]
