"""The hot tables carry no index that another index of theirs already gives (migrations
core 0006, messaging 0005, payments 0009: superapp.core.migration_ops)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection

pytestmark = pytest.mark.django_db

# (model, foreign key): each written on a hot path; its column leads a unique constraint or index.
HOT = [
    ("core.Event", "user"),
    ("core.IdempotencyKey", "user"),
    ("messaging.Message", "conversation"),
    ("payments.Posting", "account"),
    ("payments.Transfer", "sender"),
    ("payments.RedPacket", "sender"),
    ("payments.RedPacketGrab", "packet"),
]


@pytest.mark.parametrize(("model", "field"), HOT)
def test_a_hot_foreign_key_is_served_by_one_index_only(model, field):
    meta = apps.get_model(model)._meta
    column = meta.get_field(field).column
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, meta.db_table)
    own = [n for n, c in constraints.items() if c["index"] and not c["unique"] and c["columns"] == [column]]
    leading = [
        n
        for n, c in constraints.items()
        if (c["index"] or c["unique"]) and len(c["columns"]) > 1 and c["columns"][0] == column
    ]
    assert own == [], f"{meta.db_table}.{column} has its own index again: {own}"
    assert leading, f"nothing serves lookups by {meta.db_table}.{column} any more"


@pytest.mark.django_db(transaction=True)  # CONCURRENTLY cannot run in a transaction
def test_the_migration_finds_the_index_by_introspection_and_restores_it():
    """The helper drops what Django named with a hash, and builds an index back when reversed."""
    from django.db.migrations.state import ProjectState

    from superapp.core.migration_ops import drop_redundant_fk_index

    table = apps.get_model("core.Event")._meta.db_table
    field = apps.get_model("core.Event")._meta.get_field("user").clone()
    operation = drop_redundant_fk_index("core", "event", "user", field)
    state = ProjectState.from_apps(apps)

    def own() -> list[str]:
        with connection.cursor() as cursor:
            found = connection.introspection.get_constraints(cursor, table)
        return [n for n, c in found.items() if c["index"] and not c["unique"] and c["columns"] == ["user_id"]]

    with connection.schema_editor(atomic=False) as editor:
        operation.database_backwards("core", editor, state, state)
    assert own() == ["core_event_user_id_fk"]
    with connection.schema_editor(atomic=False) as editor:
        operation.database_forwards("core", editor, state, state)
    assert own() == []


@pytest.mark.django_db(transaction=True)  # CONCURRENTLY cannot run in a transaction
def test_an_index_added_concurrently_is_built_and_removed():
    """messaging 0006's helper: the index is there after the migration, goes when it is reversed
    and comes back, valid, when it runs again."""
    from django.db.migrations.state import ProjectState

    from messaging.models import Message
    from superapp.core.migration_ops import add_index_concurrently

    index = next(i for i in Message._meta.indexes if i.name == "messaging_message_notice")
    operation = add_index_concurrently("messaging", "message", index)
    state = ProjectState.from_apps(apps)

    def valid() -> list[bool]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE c.relname = %s",
                [index.name],
            )
            return [row[0] for row in cursor.fetchall()]

    assert valid() == [True]
    with connection.schema_editor(atomic=False) as editor:
        operation.database_backwards("messaging", editor, state, state)
    assert valid() == []
    with connection.schema_editor(atomic=False) as editor:
        operation.database_forwards("messaging", editor, state, state)
    assert valid() == [True]
