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
