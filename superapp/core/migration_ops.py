"""Migration helpers shared by the apps' migrations."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def drop_redundant_fk_index(
    app_label: str, model_name: str, field: str, field_definition: Any
) -> migrations.Operation:
    """Drop the single-column index Django gave a foreign key whose column already leads a unique
    constraint (or an index) of its table: that one serves the same lookups (the key's own
    checks, cascades, filters by it), so this one only costs a B-tree insert on every row
    written. ``field_definition``: the field as it now is (``db_index=False``).

    On PostgreSQL the index goes ``CONCURRENTLY`` (the migration must be ``atomic = False``), so
    writers are not queued behind an exclusive lock; reversing builds it again the same way.
    The index is found by introspection (Django names it with a hash), as Django itself does."""

    def columns(apps: Any, schema_editor: Any) -> tuple[str, str, Any]:
        model = apps.get_model(app_label, model_name)
        table = model._meta.db_table
        return table, model._meta.get_field(field).column, schema_editor.connection

    def forward(apps: Any, schema_editor: Any) -> None:
        table, column, connection = columns(apps, schema_editor)
        with connection.cursor() as cursor:
            constraints = connection.introspection.get_constraints(cursor, table)
        for name, info in constraints.items():
            if (
                info["index"]
                and not info["unique"]
                and not info["primary_key"]
                and info["columns"] == [column]
            ):
                if info.get("type") not in (None, "btree", "idx") or name.endswith("_like"):
                    continue
                concurrently = " CONCURRENTLY" if connection.vendor == "postgresql" else ""
                schema_editor.execute(f"DROP INDEX{concurrently} IF EXISTS {schema_editor.quote_name(name)}")

    def backward(apps: Any, schema_editor: Any) -> None:
        table, column, connection = columns(apps, schema_editor)
        concurrently = " CONCURRENTLY" if connection.vendor == "postgresql" else ""
        name = schema_editor.quote_name(f"{table}_{column}_fk"[:63])
        schema_editor.execute(
            f"CREATE INDEX{concurrently} IF NOT EXISTS {name} ON {schema_editor.quote_name(table)} "
            f"({schema_editor.quote_name(column)})"
        )

    return migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AlterField(model_name=model_name, name=field, field=field_definition)],
        database_operations=[migrations.RunPython(forward, backward, elidable=False)],
    )


def add_index_concurrently(app_label: str, model_name: str, index: Any) -> migrations.Operation:
    """``AddIndex``, built ``CONCURRENTLY`` on PostgreSQL (the migration must be ``atomic =
    False``) so that writers to a hot table are not queued behind the build's lock; a plain
    ``CREATE INDEX`` elsewhere (the embedded SQLite). Django's own ``AddIndexConcurrently`` is
    PostgreSQL-only."""

    def run(apps: Any, schema_editor: Any, *, add: bool) -> None:
        model = apps.get_model(app_label, model_name)
        how = {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}
        if add:
            schema_editor.add_index(model, index, **how)
        else:
            schema_editor.remove_index(model, index, **how)

    return migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AddIndex(model_name=model_name, index=index)],
        database_operations=[
            migrations.RunPython(
                lambda apps, editor: run(apps, editor, add=True),
                lambda apps, editor: run(apps, editor, add=False),
                elidable=False,
            )
        ],
    )
