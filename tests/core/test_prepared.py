"""superapp.core.prepared: statements prepared once per connection, and how they recover.

On the real PostgreSQL, with the driver the settings pick (psycopg2 here; the ASGI server's
psycopg 3 path runs in the realtime tests). Statements of these tests work on a table of their
own, so that a schema change here touches nothing else.
"""

from __future__ import annotations

import json

import pytest
from django.db import DatabaseError, connection, transaction

from superapp.core import prepared
from superapp.core.prepared import PreparedStatement
from tests.core.test_settings_and_health import run_python

pytestmark = pytest.mark.django_db(transaction=True)

READ = PreparedStatement("test_prepared_read", "SELECT label FROM test_prepared_t WHERE id = %(id)s")
COUNT = PreparedStatement("test_prepared_count", "SELECT count(*) FROM test_prepared_t WHERE id >= %s")


@pytest.fixture
def table():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE test_prepared_t (id int PRIMARY KEY, label varchar(10))")
        cursor.execute("INSERT INTO test_prepared_t VALUES (1, 'one'), (2, 'two')")
    prepared.forget(connection.connection)
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE test_prepared_t")
        cursor.execute("DEALLOCATE ALL")
    prepared.forget(connection.connection)


def read(statement: PreparedStatement, params) -> list[tuple]:
    with connection.cursor() as cursor:
        statement.execute(cursor, params)
        return cursor.fetchall()


def server_statements() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}


def test_prepared_once_then_executed(table):
    assert read(READ, {"id": 1}) == [("one",)]
    assert read(COUNT, [1]) == [(2,)]
    assert {READ.name, COUNT.name} <= server_statements()
    assert read(READ, {"id": 2}) == [("two",)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT generic_plans FROM pg_prepared_statements WHERE name = %s", [READ.name])
        assert cursor.fetchone()[0] == 2  # plan_cache_mode=force_generic_plan (settings.py)


def test_a_column_type_change_is_survived(table):
    """0A000 "cached plan must not change result type": a migration widened a returned column.
    Outside a transaction the call prepares again at once; inside one, that call fails (nothing
    was written) and the next one works."""
    assert read(READ, {"id": 1}) == [("one",)]
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE test_prepared_t ALTER label TYPE varchar(20)")
    assert read(READ, {"id": 1}) == [("one",)]
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE test_prepared_t ALTER label TYPE varchar(30)")
    with pytest.raises(DatabaseError), transaction.atomic():
        read(READ, {"id": 1})
    with transaction.atomic():
        assert read(READ, {"id": 2}) == [("two",)]


def test_after_deallocate_all_one_call_fails_and_every_statement_recovers(table):
    """A pooler's DISCARD ALL drops every statement of the connection: the first call that finds
    out forgets them all, so no other statement fails a request for it too."""
    read(READ, {"id": 1})
    read(COUNT, [1])
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    with pytest.raises(DatabaseError), transaction.atomic():
        read(READ, {"id": 1})
    with transaction.atomic():
        assert read(COUNT, [2]) == [(1,)]
        assert read(READ, {"id": 1}) == [("one",)]
    # Outside a transaction it is repaired within the same call.
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    assert read(COUNT, [1]) == [(2,)]
    assert read(READ, {"id": 2}) == [("two",)]


def test_a_statement_left_on_the_server_is_prepared_afresh(table):
    """A statement the process forgot (after an error) may be stale: it is deallocated and
    prepared again, not reused."""
    read(READ, {"id": 1})
    prepared.forget(connection.connection)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE test_prepared_t ALTER label TYPE text")
    with transaction.atomic():
        assert read(READ, {"id": 1}) == [("one",)]


def test_percent_signs():
    """ "%%" is a literal "%" in both parameter styles, "%%s" included."""
    positional = PreparedStatement(
        "test_prepared_pct", "SELECT format('%%s-%%%%', %s::text), 'a%%' LIKE %s::text"
    )
    named = PreparedStatement(
        "test_prepared_pct_named", "SELECT format('%%s', %(x)s::text), %(x)s::text || '%%s'"
    )
    with connection.cursor() as cursor:
        positional.execute(cursor, ["v", "a%"])
        assert cursor.fetchall() == [("v-%", True)]
        named.execute(cursor, {"x": "w"})
        assert cursor.fetchall() == [("w", "w%s")]


def test_positional_statements_refuse_a_mapping():
    with connection.cursor() as cursor, pytest.raises(TypeError):
        COUNT.execute(cursor, {"id": 1})


def test_sql_of_maps_an_execute_back(table):
    assert prepared.sql_of(f"EXECUTE {READ.name}(1)") == READ.sql
    assert prepared.sql_of("SELECT 1") == "SELECT 1"


PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.DB_PREPARED_STATEMENTS, s.DATABASES['default'].get('OPTIONS', {}).get('options', '')]))"
)


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),  # commands, Celery by default: a connection per task, nothing to save
        ({"CONN_MAX_AGE": "60"}, True),  # docker-compose's worker, gunicorn
        ({"DB_DRIVER": "psycopg", "DB_POOL": "1"}, True),  # the ASGI server's pool
        ({"CONN_MAX_AGE": "60", "DB_PREPARED_STATEMENTS": "false"}, False),  # PgBouncer
    ],
)
def test_on_where_connections_outlive_a_request(tmp_path, env, on):
    base = {
        "DATABASE_URL": "postgres://postgres@127.0.0.1/x?options=-c%20search_path%3Dpublic",
        "SECRET_KEY": "k" * 50,
    }
    result = run_python(PROBE, {**base, **env}, tmp_path)
    assert result.returncode == 0, result.stderr
    enabled, options = json.loads(result.stdout.splitlines()[-1])
    assert enabled is on
    assert options.startswith("-c search_path=public")  # the URL's own options are kept
    assert ("plan_cache_mode=force_generic_plan" in options) is on


def _pipelining() -> bool:
    """Is the driver psycopg 3 (whose pipeline mode ``prepared.pipeline`` uses)?"""
    import sys

    psycopg = sys.modules.get("psycopg")
    connection.ensure_connection()
    return psycopg is not None and isinstance(connection.connection, psycopg.Connection)


def test_a_pipeline_runs_each_statement_with_its_own_snapshot(table):
    """What the batched sends rely on: a statement queued after one that waits for a lock sees
    what the lock holder committed (its snapshot is taken when it starts, not when the block
    was sent), so locking a row and then reading what its lock protects stays right."""
    from tests.threads import hold_locks

    def lock_one_and_rename_two():
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM test_prepared_t WHERE id = 1 FOR UPDATE")
            cursor.execute("UPDATE test_prepared_t SET label = 'renamed' WHERE id = 2")

    held = hold_locks(lock_one_and_rename_two)
    import threading

    threading.Timer(0.3, held.release).start()  # commits while the pipeline waits for row 1
    with transaction.atomic(), prepared.pipeline():
        first = connection.cursor()
        first.execute("SELECT id FROM test_prepared_t WHERE id = 1 FOR UPDATE")
        second = connection.cursor()
        second.execute("SELECT label FROM test_prepared_t WHERE id = 2")
    assert first.fetchall() == [(1,)]
    assert second.fetchall() == [("renamed",)]


def test_a_failing_statement_fails_the_pipeline_and_the_rest_does_not_run(table):
    with (
        pytest.raises(DatabaseError),
        transaction.atomic(),
        prepared.pipeline(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE test_prepared_t SET label = 'x' WHERE id = 1")
        cursor.execute("SELECT 1 / 0")
        cursor.execute("UPDATE test_prepared_t SET label = 'y' WHERE id = 2")
    with connection.cursor() as cursor:
        cursor.execute("SELECT label FROM test_prepared_t ORDER BY id")
        assert cursor.fetchall() == [("one",), ("two",)]  # rolled back, the third never ran


def test_a_pipeline_is_one_round_trip_under_psycopg_3(table):
    from tests.pgwire import RoundTrips

    with RoundTrips() as trips, trips.django_connection():
        pipelining = _pipelining()
        trips.reset()
        with prepared.pipeline():
            cursors = [connection.cursor() for _ in range(3)]
            for n, cursor in enumerate(cursors, start=1):
                cursor.execute("SELECT label FROM test_prepared_t WHERE id = %s", [n])
        counted = trips.count
        assert [c.fetchall() for c in cursors] == [[("one",)], [("two",)], []]
    assert counted == (1 if pipelining else 3)  # psycopg2: one statement, one round trip
