"""The benchmark's environment: its own database and Redis db, the production settings shape."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = os.environ.get("BENCH_DB_NAME", "superapp_bench")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
DEMO_PASSWORD = "superapp-demo"

if not DB_NAME.startswith("superapp_bench"):
    raise SystemExit("BENCH_DB_NAME must start with superapp_bench (never a shared database).")

# Variables of the caller's shell that would change what is measured.
_DROP = (
    "DATABASE_URL",
    "REDIS_URL",
    "DJANGO_SETTINGS_MODULE",
    "DB_DRIVER",
    "DB_POOL",
    "CONN_MAX_AGE",
    "DB_POOL_MIN",
    "DB_POOL_MAX",
    "CACHE_URL",
    "CHANNELS_REDIS_URL",
    "CELERY_BROKER_URL",
    "PROMETHEUS_MULTIPROC_DIR",
    "WEB_CONCURRENCY",
    "GUNICORN_WORKERS",
    "GUNICORN_BIND",
)

# One run directory per benchmark run: the processes a scenario starts (seeders, drivers, checks)
# inherit it through the environment instead of each leaving an empty one behind.
_RUN_DIR_VAR = "SUPERAPP_BENCH_RUN_DIR"
if os.environ.get(_RUN_DIR_VAR) and Path(os.environ[_RUN_DIR_VAR]).is_dir():
    RUN_DIR = Path(os.environ[_RUN_DIR_VAR])
else:
    RUN_DIR = Path(tempfile.mkdtemp(prefix="superapp-bench-"))
    os.environ[_RUN_DIR_VAR] = str(RUN_DIR)


def database_url(application_name: str = "superapp_bench") -> str:
    # application_name lets the bench count each variant's connections in pg_stat_activity.
    return f"{PG}/{DB_NAME}?application_name={application_name}"


def server_env(
    *,
    db: dict[str, str] | None = None,
    app_name: str = "superapp_bench",
    settings: str = "superapp.settings",
    **extra: str,
) -> dict[str, str]:
    """The environment of one server process: production settings as docker-compose sets them.

    ``db`` holds the database knobs being compared (``DB_DRIVER``, ``CONN_MAX_AGE``, ``DB_POOL``).
    """
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    metrics_dir = RUN_DIR / f"prometheus-{app_name}"
    metrics_dir.mkdir(exist_ok=True)
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        DATABASE_URL=database_url(app_name),
        REDIS_URL=REDIS_URL,
        SECRET_KEY="bench-secret-key-not-for-production-" + "x" * 24,
        # Plain HTTP on 127.0.0.1: no redirect to https (the only change from docker-compose).
        SECURE_SSL_REDIRECT="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        ACCESS_TOKEN_MINUTES="60",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(db or {})
    env.update(extra)
    return env


def psql(sql: str, db: str = "postgres") -> str:
    out = subprocess.run(
        ["psql", f"{PG}/{db}", "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def prepare_database() -> None:
    """Create (once) and migrate the bench database, seed the demo users."""
    if psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'") != "1":
        psql(f'CREATE DATABASE "{DB_NAME}"')
    env = server_env(db={"DB_DRIVER": "psycopg2"}, app_name="superapp_bench_setup")
    for args in (["migrate", "--noinput", "-v", "0"], ["seed_demo"]):
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
        )


_monitor = None


def connections_by_app() -> dict[str, int]:
    """Open connections to the bench database, by application_name (one per server variant)."""
    global _monitor
    if _monitor is None:
        import psycopg2

        _monitor = psycopg2.connect(f"{PG}/postgres?application_name=superapp_bench_monitor")
        _monitor.autocommit = True
    with _monitor.cursor() as cursor:
        cursor.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = %s GROUP BY 1",
            [DB_NAME],
        )
        return dict(cursor.fetchall())


def http_json(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def login(base_url: str, handle: str = "alice") -> str:
    status, body = http_json(
        "POST", f"{base_url}/api/v1/auth/login", {"login": handle, "password": DEMO_PASSWORD}
    )
    if status != 200:
        raise SystemExit(f"login as {handle} failed: {status} {body}")
    return body["access"]


def ensure_tools() -> None:
    """Install wrk and nginx from Debian when missing (the bench needs both)."""
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx-light")) if not shutil.which(tool)]
    if not missing:
        return
    print(f"installing {' '.join(missing)} (apt-get)", flush=True)
    quiet = {"stdout": subprocess.DEVNULL, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    subprocess.run(["apt-get", "update", "-qq"], check=True, **quiet)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, **quiet)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    pg = psql("SHOW server_version")
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {platform.platform()}, "
        f"Python {platform.python_version()}, PostgreSQL {pg}"
    )


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
