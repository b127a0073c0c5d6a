"""Foreign keys whose column already leads a unique constraint or an index of their table lose
their own single-column index: it served no lookup the other does not, and cost a B-tree insert
on every row written (events, messages, postings, transfers, grabs: the hot writes). Dropped
CONCURRENTLY on PostgreSQL (hence not atomic): superapp.core.migration_ops."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from superapp.core.migration_ops import drop_redundant_fk_index


class Migration(migrations.Migration):
    atomic = False
    dependencies = [
        ("payments", "0008_identity_verification_redacted_at"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        drop_redundant_fk_index(
            "payments",
            "posting",
            "account",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="postings",
                to="payments.ledgeraccount",
            ),
        ),
        drop_redundant_fk_index(
            "payments",
            "redpacket",
            "sender",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        drop_redundant_fk_index(
            "payments",
            "redpacketgrab",
            "packet",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="grabs",
                to="payments.redpacket",
            ),
        ),
        drop_redundant_fk_index(
            "payments",
            "transfer",
            "sender",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
