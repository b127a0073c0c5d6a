"""HiddenMessage's conversation and seq required (0007 filled them in), and indexed by user."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0007_hiddenmessage_place"),
    ]

    operations = [
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
        migrations.AddIndex(
            model_name="hiddenmessage",
            index=models.Index(fields=["user", "conversation", "seq"], name="messaging_hidden_user_seq"),
        ),
    ]
