"""Django's PostgreSQL backend, whose pool checks a lent connection with
:func:`superapp.core.dbpool.check` (no round trip) instead of an empty query.

Django 5.2 gives psycopg's pool its own ``check`` (``ConnectionPool.check_connection`` when
``CONN_HEALTH_CHECKS`` is on) and refuses another one in ``OPTIONS["pool"]`` ("got multiple
values for keyword argument 'check'"; Django ticket #37075, fixed for 6.1). Until then this
backend swaps the check once the pool exists. settings.py uses it with ``DB_POOL`` only.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

from superapp.core import dbpool


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        pool = super().pool
        if pool is not None and pool._check is ConnectionPool.check_connection:
            pool._check = dbpool.check
        return pool
