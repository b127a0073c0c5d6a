"""The health check of Django's connection pool (``DB_POOL``), without a round trip when it can.

Django gives psycopg's pool ``ConnectionPool.check_connection`` when ``CONN_HEALTH_CHECKS`` is
on: an empty query before every lend, one round trip to PostgreSQL per WebSocket frame or
request. :func:`check` runs that query only when it may find something:

* the connection's socket has something to read (looked at without waiting): PostgreSQL closed
  it (a restart, a failover, ``pg_terminate_backend``, its idle timeout) and sent its last
  error message or the end of the stream; the query then finds it broken and the pool lends
  another. go-sql-driver/mysql checks a reused connection the same way (``checkConnLiveness``);
* or the connection was not lent for ``DB_HEALTH_CHECK_IDLE_SECONDS`` (30): a NAT, firewall or
  load balancer between here and PostgreSQL may have forgotten an idle connection without
  telling either end (an AWS NLB after 350 s), which only a packet finds out. PgBouncer skips
  its check for connections released less than ``server_check_delay`` (30 s) ago, likewise.

A busy server thus checks without round trips, and a restarted database still fails no
request. Left as before: a server that vanished without closing the connection within the
window (its host gone) is found by the first statement, as the empty query would have hung on
it; and the server may close the connection between the check and the first statement.
"""

from __future__ import annotations

import select
import time
from typing import Any

from django.conf import settings
from psycopg_pool import ConnectionPool


def check(conn: Any) -> None:
    """The pool's ``check`` callback: raise if the connection is broken, return quietly if not."""
    now = time.monotonic()
    lent_at = getattr(conn, "_superapp_lent_at", None)
    if (
        conn.closed
        or lent_at is None  # (its first lend)
        or now - lent_at >= settings.DB_HEALTH_CHECK_IDLE_SECONDS
        or _readable(conn)
    ):
        ConnectionPool.check_connection(conn)  # the empty query; raises if broken
    conn._superapp_lent_at = now


def _readable(conn: Any) -> bool:
    """Did the server say something (or hang up) while the connection was idle?"""
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))
