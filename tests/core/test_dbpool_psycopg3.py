"""The pool's health check (superapp/core/dbpool.py) on psycopg 3 connections: no round trip for
a live connection lent again soon, the empty query for one idle for long and (which fails) for
one the server closed. Runs in the psycopg 3
pass only (Makefile PSYCOPG3_TESTS; the psycopg2 pass hides psycopg 3: tests/conftest.py);
tests/core/test_dbpool.py checks the pool itself, in a production process, in both passes."""

from __future__ import annotations

import select
import sys

import pytest

if sys.modules.get("psycopg", 0) is None:  # named on the command line in a psycopg2 run
    raise ImportError("psycopg 3 is hidden: run these with DB_DRIVER=psycopg (Makefile PSYCOPG3_TESTS)")

import psycopg
from django.db import connection

from superapp.core import dbpool
from tests.pgwire import RoundTrips

from .test_dbpool import terminate


def _dsn(port: int | None = None) -> str:
    s = connection.settings_dict
    return (
        f"host=127.0.0.1 port={port or s.get('PORT') or 5432} user={s['USER'] or 'postgres'} "
        f"dbname={s['NAME']} sslmode=disable gssencmode=disable"
    )


@pytest.mark.django_db
def test_a_live_connection_lent_again_soon_passes_without_a_round_trip():
    with RoundTrips() as trips, psycopg.connect(_dsn(trips.port), autocommit=True) as conn:
        conn.execute("SELECT 1")
        trips.reset()
        dbpool.check(conn)  # its first lend: the empty query
        assert trips.count == 1
        trips.reset()
        dbpool.check(conn)
        conn.autocommit = False  # as Django leaves a pooled connection between lends, or not
        dbpool.check(conn)
        assert trips.count == 0
        assert conn.execute("SELECT 2").fetchone() == (2,)  # and it still works


@pytest.mark.django_db
def test_a_connection_idle_for_long_gets_the_query(settings):
    """A middlebox may have dropped an idle connection silently: only a packet tells."""
    settings.DB_HEALTH_CHECK_IDLE_SECONDS = 30
    with RoundTrips() as trips, psycopg.connect(_dsn(trips.port), autocommit=True) as conn:
        dbpool.check(conn)
        conn._superapp_lent_at -= 31  # last lent 31 s ago
        trips.reset()
        dbpool.check(conn)
        assert trips.count == 1
        trips.reset()
        dbpool.check(conn)  # lent just now
        assert trips.count == 0


@pytest.mark.django_db
def test_a_connection_the_server_ended_fails_the_check():
    conn = psycopg.connect(_dsn(), autocommit=True)
    try:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        dbpool.check(conn)  # lent once: the next check looks at the socket only
        terminate(pid)
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN)
        assert poller.poll(5000), "the server's goodbye never reached the socket"
        with pytest.raises(psycopg.OperationalError):
            dbpool.check(conn)
        assert conn.closed or conn.broken
    finally:
        conn.close()


@pytest.mark.django_db
def test_a_closed_connection_fails_the_check():
    conn = psycopg.connect(_dsn(), autocommit=True)
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        dbpool.check(conn)
