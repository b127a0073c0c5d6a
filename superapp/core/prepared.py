"""Hot SQL statements prepared once per database connection (PostgreSQL ``PREPARE``/``EXECUTE``).

PostgreSQL parses and plans every statement it is sent. For the few long statements on the hot
paths (the Moments feed page, a message's claim of its number, the event stream's publish, a
ledger booking) planning costs it more than running them: 0.3-5 ms against 0.1-1.6 ms
(BENCHMARKS.md). So each of them is prepared once per connection with SQL ``PREPARE`` and then
only ``EXECUTE``d, with a generic plan from the first call (settings.py gives connections
``plan_cache_mode=force_generic_plan``; only these statements are prepared, and each is written so
that one plan suits every value). SQL ``PREPARE`` rather than a driver's protocol-level
preparation: it works the same with psycopg2 (WSGI) and psycopg 3 (ASGI), and with Django's
client-side parameter binding. ``DB_PREPARED_STATEMENTS`` is on by default where connections
outlive a request (Django's pool, ``CONN_MAX_AGE`` > 0); with a connection per request preparing
would cost two round trips and save nothing.

Prepared statements live as long as their connection, and ``PREPARE`` is not transactional
(a rolled-back transaction keeps it). The connections on which a statement is prepared are
remembered here (the driver's connection objects, weakly, so a closed one is forgotten; with
Django's pool a connection serves several threads in turn). Behind a pooler that hands one
client's statements to different server connections (PgBouncer in transaction mode), or one
that runs ``DISCARD ALL`` between clients, set ``DB_PREPARED_STATEMENTS=false``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import sys
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.db.backends.utils import CursorWrapper

# invalid_sql_statement_name (not prepared on this connection), feature_not_supported ("cached
# plan must not change result type": a column it returns changed type).
_PREPARE_AGAIN = {"26000", "0A000"}


def _enabled() -> bool:
    return bool(getattr(settings, "DB_PREPARED_STATEMENTS", False))


_ALL: list[PreparedStatement] = []


def forget(raw_connection: Any) -> None:
    """Forget that anything is prepared on this driver connection (after a ``DEALLOCATE ALL``)."""
    for statement in _ALL:
        statement.prepared_on.discard(raw_connection)


class PreparedStatement:
    """One statement written with ``%(name)s`` parameters, run prepared where it can be.

    ``enabled`` decides per call whether to prepare (default: the ``DB_PREPARED_STATEMENTS``
    setting); off, or on another database than PostgreSQL, the plain statement runs.
    """

    def __init__(self, label: str, sql: str, *, enabled: Callable[[], bool] = _enabled) -> None:
        self.label = label
        self.sql = sql
        self.enabled = enabled
        # The driver connections this statement is known to be prepared on.
        self.prepared_on: weakref.WeakSet = weakref.WeakSet()
        _ALL.append(self)

    @functools.cached_property
    def _parts(self) -> tuple[str, str, tuple[str, ...] | None]:
        """``(PREPARE text, EXECUTE text, parameter names in $n order)``; names is None for a
        statement written with positional ``%s`` parameters."""
        names: list[str] = []

        def named(match: re.Match) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        count = 0

        def positional(match: re.Match) -> str:
            nonlocal count
            count += 1
            return f"${count}"

        # "%%" is a literal "%" (in both styles, as for Django's cursor), read in the same pass
        # so that "%%s" stays the text "%s".
        if "%(" in self.sql:
            body = re.sub(r"%%|%\((\w+)\)s", lambda m: "%" if m.group(0) == "%%" else named(m), self.sql)
        else:
            body = re.sub(r"%%|%s", lambda m: "%" if m.group(0) == "%%" else positional(m), self.sql)
        # The name changes with the text, so a connection never runs an older version of it
        # (during a rolling deploy, say).
        name = f"{self.label}_{hashlib.sha256(body.encode()).hexdigest()[:16]}"
        n = len(names) if names else count
        execute = f"EXECUTE {name}({', '.join(['%s'] * n)})" if n else f"EXECUTE {name}"
        return f"PREPARE {name} AS {body}", execute, (tuple(names) if names else None)

    @property
    def name(self) -> str:
        """The name it is prepared under (it changes with the statement's text)."""
        return self._parts[0].split()[1]

    def execute(self, cursor: CursorWrapper, params: Mapping[str, Any] | Sequence[Any]) -> None:
        """Run the statement on Django's ``cursor`` with ``params`` (a mapping for ``%(name)s``,
        a sequence for ``%s``); fetch from the cursor after.

        The first time on a connection it is prepared first (one look at
        ``pg_prepared_statements``; a statement of that name already there, from before this
        process forgot the connection, is deallocated and prepared again: it may be stale).
        Works inside the caller's transaction.

        When the server no longer has it (26000: ``DISCARD ALL`` or ``DEALLOCATE ALL`` by a
        pooler) or can no longer run it (0A000: a migration changed the type of a column it
        returns), every statement of this connection is forgotten, so that the next call of each
        prepares it afresh; outside a transaction this call does so at once, inside one the
        failed statement has aborted the transaction and the caller's error stands (nothing was
        written).
        """
        db = cursor.db
        if db.vendor != "postgresql" or not self.enabled():
            cursor.execute(self.sql, params)
            return
        prepare, execute, names = self._parts
        if names is None:
            if isinstance(params, Mapping):
                raise TypeError(f"{self.label}: positional parameters, given a mapping")
            values = list(params)
        else:
            values = [params[name] for name in names]  # type: ignore[call-overload]
        raw = db.connection
        if raw in self.prepared_on:
            try:
                cursor.execute(execute, values)
                return
            except DatabaseError as exc:
                cause = exc.__cause__
                code = getattr(cause, "pgcode", None) or getattr(cause, "sqlstate", None)
                if code not in _PREPARE_AGAIN:
                    raise
                forget(raw)
                if db.in_atomic_block:
                    raise
        # On the driver's cursor: preparing is the driver's business, like a protocol-level
        # prepare, so Django's query log and execute wrappers see one statement per call, the
        # EXECUTE (and query counts pinned by tests do not depend on which call came first).
        with db.wrap_database_errors:
            driver_cursor = cursor.cursor
            driver_cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = %s)", [self.name]
            )
            if driver_cursor.fetchone()[0]:
                driver_cursor.execute(f"DEALLOCATE {self.name}")
            driver_cursor.execute(prepare)
        self.prepared_on.add(raw)
        cursor.execute(execute, values)


def sql_of(text: str) -> str:
    """The statement behind an ``EXECUTE <name>(...)`` as logged (for tests reading the query
    log); any other text as it is."""
    if text.startswith("EXECUTE "):
        name = text.split()[1].split("(")[0]
        for statement in _ALL:
            if statement.name == name:
                return statement.sql
    return text


def execute_bound(cursor: CursorWrapper, sql: str, params: Mapping[str, Any] | Sequence[Any]) -> Any:
    """Run ``sql`` with its parameters sent apart from the text; returns the cursor to fetch from.

    For the statements that take whole lists (``unnest(%s::bigint[], ...)``, a batch of rows in
    one statement): Django's psycopg 3 cursor binds client-side, quoting every element of every
    list in Python (about 3 ms for a 16-message batch's arrays), where psycopg 3's own cursor
    sends them as parameters, dumped in C. psycopg2 quotes in C anyway: Django's cursor is used.
    The statement is added to Django's query log (with its parameters left out); Django's
    execute wrappers do not see it. Not prepared: SQL ``EXECUTE`` takes no bound parameters, and
    psycopg's own preparing is off on Django's connections (``prepare_threshold=None``; turned on,
    psycopg sends ``DEALLOCATE ALL`` at every rollback, which would drop the statements of
    :class:`PreparedStatement` too).
    """
    psycopg = sys.modules.get("psycopg")  # None where settings hid it (psycopg2 chosen)
    if psycopg is None or not isinstance(cursor.cursor, psycopg.ClientCursor):
        cursor.execute(sql, params)
        return cursor
    db = cursor.db
    db.validate_no_broken_transaction()  # as Django's cursor does before every statement
    bound = psycopg.Cursor(db.connection)
    started = time.monotonic()
    try:
        with db.wrap_database_errors:
            bound.execute(sql, params)
    finally:  # (a failed statement is logged too, as Django's own cursor logs it)
        if db.queries_logged:  # in Django's query log too (tests count statements, DEBUG shows them)
            db.queries_log.append(
                {"sql": f"{sql} /* bound parameters */", "time": f"{time.monotonic() - started:.3f}"}
            )
    return bound


@contextlib.contextmanager
def pipeline(db: Any = None) -> Iterator[None]:
    """Statements executed inside this block go to PostgreSQL together: psycopg 3's pipeline mode,
    one round trip for all of them instead of one each (on a busy 2-core host a round trip costs
    ~1 ms of waiting, whatever the statement: BENCHMARKS.md "Messaging"). Each is still a
    statement of its own, run in order, with its own snapshot (under READ COMMITTED a statement
    sees what committed before it started, e.g. while an earlier one of the block waited for a
    lock). Read results only after the block: a fetch inside it waits for everything queued so
    far (still correct, only one more round trip). Cursors must stay open until fetched.

    A failing statement fails the block (the first error, as a Django ``DatabaseError``; the
    statements after it are not run) and, inside a transaction, the transaction. With psycopg2 or
    another database the statements simply run one by one as they are executed.
    """
    from django.db import connection

    db = db or connection
    psycopg = sys.modules.get("psycopg")
    db.ensure_connection()
    raw = db.connection
    if psycopg is None or not isinstance(raw, psycopg.Connection):
        yield
        return
    with db.wrap_database_errors, raw.pipeline():
        yield
