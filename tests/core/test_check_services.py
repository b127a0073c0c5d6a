"""`make test` first checks PostgreSQL and Redis and says which is missing and how to start it."""

import os
import subprocess
import sys

from tests.processes import ROOT, free_port


def run_check(**env):
    full = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "scripts/check_services.py"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_both_reachable():
    result = run_check()
    assert result.returncode == 0, result.stderr
    assert "PostgreSQL and Redis reachable" in result.stdout


def test_redis_missing_is_named_with_how_to_start_it():
    result = run_check(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 1
    assert "Redis is not reachable" in result.stderr and "redis-server" in result.stderr
    assert "PostgreSQL is not reachable" not in result.stderr


def test_postgres_missing_is_named_with_how_to_start_it():
    result = run_check(DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/superapp")
    assert result.returncode == 1
    assert "PostgreSQL is not reachable" in result.stderr and "pg_ctlcluster" in result.stderr
    assert "Redis is not reachable" not in result.stderr
