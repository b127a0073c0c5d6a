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
        ("core", "0005_audit_log_immutable"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        drop_redundant_fk_index(
            "core",
            "event",
            "user",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        drop_redundant_fk_index(
            "core",
            "idempotencykey",
            "user",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
