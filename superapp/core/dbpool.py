"""The health check of Django's connection pool (``DB_POOL``), without a round trip when it can.

Django gives psycopg's pool ``ConnectionPool.check_connection`` when ``CONN_HEALTH_CHECKS`` is
on: an empty query before every lend, one round trip to PostgreSQL per WebSocket frame or
request. :func:`check` first looks at the connection's socket without waiting: a connection
that PostgreSQL closed (a restart, a failover, ``pg_terminate_backend``, an idle timeout) has
something to read, the server's last error message or the end of the stream, and only then is
the empty query run, which finds it broken so that the pool lends another one. A socket with
nothing to read is lent as is. go-sql-driver/mysql checks a reused connection the same way
(``checkConnLiveness``: a non-blocking read before the first query).

What it misses, the empty query misses too: a server that vanished without closing the
connection (its host gone) leaves nothing to read, and the empty query would hang until TCP
gave up. The race is the same as with the empty query: the server may close the connection
between the check and the first statement.
"""

from __future__ import annotations

import select
from typing import Any

from psycopg_pool import ConnectionPool


def check(conn: Any) -> None:
    """The pool's ``check`` callback: raise if the connection is broken, return quietly if not."""
    if conn.closed:
        ConnectionPool.check_connection(conn)  # raises, as for any broken connection
        return
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN | select.POLLPRI)
    if poller.poll(0):  # the server said something (or hung up) while the connection was idle
        ConnectionPool.check_connection(conn)
