"""Django's pool with the health check of superapp/core/dbpool.py, in a production process (either
driver runs these: the process is psycopg 3's): a lend after the server ended the only pooled
connection gets a new one, where without the check that request fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from django.db import connection

from tests.processes import ROOT


def terminate(pid: int) -> None:
    """End a backend and wait until it is gone (pg_terminate_backend only signals it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        for _ in range(500):
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # (a transaction's reads are cached)
            cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone() is None:
                return
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} still there")


# A production process with a pool of exactly one connection: the server ends it between two
# "requests"; the second must get a fresh connection from the check, not an error.
POOL_PROBE = """
import django, json
django.setup()
from django.db import connection
c = connection.cursor(); c.execute("SELECT pg_backend_pid()"); pid = c.fetchone()[0]; c.close()
connection.close()  # back to the pool
check = connection.pool._check
print(json.dumps({"pid": pid, "check": check and f"{check.__module__}.{check.__qualname__}"}), flush=True)
assert input() == "ended"
try:
    c = connection.cursor(); c.execute("SELECT pg_backend_pid()"); print(json.dumps({"pid": c.fetchone()[0]}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__}))
"""


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("checks", ["true", "false"])
def test_the_pool_replaces_a_connection_the_server_ended(tmp_path, checks):
    s = connection.settings_dict
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "DB_DRIVER", "DB_POOL", "DB_PREPARED_STATEMENTS", "CONN_MAX_AGE")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="superapp.settings",
        SUPERAPP_VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"postgres://{s['USER'] or 'postgres'}@127.0.0.1:{s.get('PORT') or 5432}/{s['NAME']}",
        SECRET_KEY="k" * 50,
        DB_DRIVER="psycopg",
        DB_POOL="1",
        DB_POOL_MIN="1",
        DB_POOL_MAX="1",
        DB_HEALTH_CHECKS=checks,
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", POOL_PROBE], cwd=ROOT, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        first = json.loads(proc.stdout.readline() or "null") or pytest.fail(proc.stderr.read())
        if checks == "true":
            assert first["check"] == "superapp.core.dbpool.check"
        else:
            assert first["check"] is None
        terminate(first["pid"])
        out, err = proc.communicate("ended\n", timeout=60)
    finally:
        proc.kill()
    second = json.loads(out.splitlines()[-1])
    if checks == "true":
        assert "pid" in second, err  # served, by a new backend
        assert second["pid"] != first["pid"]
    else:  # without the check, the dead connection was lent: that request failed
        assert second == {"error": "OperationalError"}, (second, err)
