"""Shared by the payments load benchmarks (``bench.payments_transfers``, ``bench.payments_grabs``).

Their own PostgreSQL database ``superapp_pay_bench2`` (dropped and migrated each run) and Redis db
15, production settings (``bench.payments_settings``: ``superapp.settings`` with two limits
raised for the red-packet shape only), Celery tasks queued in Redis as in production (no worker
runs; the queue is flushed with the Redis db). The orchestrating process never imports Django:
the data are loaded and the service layer is driven in child processes, as in
``bench.payments_ledger``.

Here: the environment of those processes, pgbench runs (with per-transaction latencies from its
log), the invariants checked after every run, and the Markdown helpers.
"""

from __future__ import annotations

import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from .env import PG, ROOT, load_average, psql
from .stacks import PSYCOPG2_PERSISTENT, gunicorn_production

DB_NAME = "superapp_pay_bench2"
REDIS_URL = "redis://127.0.0.1:6379/15"
SETTINGS = "bench.payments_settings"
PIN = "123456"


def database_url(app_name: str) -> str:
    return f"{PG}/{DB_NAME}?application_name={app_name}"


def django_env(app_name: str, **extra: str) -> dict[str, str]:
    """The environment of a Django process of this bench: production settings, our database."""
    from .env import server_env

    env = server_env(db=PSYCOPG2_PERSISTENT, app_name=app_name, settings=SETTINGS)
    env.update(
        DATABASE_URL=database_url(app_name),
        REDIS_URL=REDIS_URL,
        LOG_LEVEL="WARNING",
        CELERY_QUEUE="bench_payments",
        ACCESS_TOKEN_MINUTES="240",  # the tokens made at load time outlive the whole run
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def gunicorn_env() -> dict[str, str]:
    """What the web servers of this bench run with: the production gunicorn (worker class and
    threads from deploy/gunicorn.conf.py), psycopg2 with persistent connections, behind nginx."""
    return {**gunicorn_production(), "DATABASE_URL": database_url("b_pay_web"), "REDIS_URL": REDIS_URL}


def prepare_database() -> None:
    """Drop, create and migrate the bench database; empty Redis db 15."""
    psql(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=django_env("b_pay_migrate"),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    flush_redis()


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def child(module: str, *args: str, app_name: str = "b_pay_child", timeout: float = 3600) -> dict:
    """Run ``python -m <module> <args>`` with Django's environment; its last stdout line is JSON."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=django_env(app_name),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def analyze() -> None:
    psql("ANALYZE", db=DB_NAME)


# --- pgbench ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One measured run: how many, how long, latencies (ms) and the machine's load meanwhile."""

    done: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    errors: dict[str, int] = field(default_factory=dict)
    load: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50) if self.latencies_ms else self.extra.get("p50_ms", 0.0)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99) if self.latencies_ms else self.extra.get("p99_ms", 0.0)

    def summary(self) -> dict:
        return {
            "done": self.done,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.per_second, 1),
            **self.extra,
            "p50_ms": round(self.p50, 2),
            "p99_ms": round(self.p99, 2),
            "errors": self.errors,
            "load": self.load,
        }


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def pgbench(
    script: str, *, clients: int, seconds: float | None = None, transactions: int | None = None
) -> Run:
    """Run a pgbench script on the bench database (simple query protocol, like Django's
    psycopg2); every transaction's latency comes from pgbench's own log (``-l``)."""
    workdir = tempfile.mkdtemp(prefix="pay-pgbench-")
    path = os.path.join(workdir, "script.sql")
    with open(path, "w") as f:
        f.write(script)
    argv = ["pgbench", "-n", "-c", str(clients), "-j", "2", "-f", path, "-l", "--log-prefix",
            os.path.join(workdir, "log"), "-h", "127.0.0.1", "-U", "postgres", DB_NAME]  # fmt: skip
    if seconds is not None:
        argv[2:2] = ["-T", str(max(1, round(seconds)))]
    else:
        argv[2:2] = ["-t", str(transactions)]
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0 or "tps =" not in out.stdout:
        raise RuntimeError(f"pgbench failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    tps = float(re.search(r"tps = ([\d.]+)", out.stdout).group(1))
    done = int(re.search(r"number of transactions actually processed: (\d+)", out.stdout).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    latencies = []
    for log in glob.glob(os.path.join(workdir, "log*")):
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    latencies.append(int(parts[2]) / 1000)
    for name in os.listdir(workdir):
        os.unlink(os.path.join(workdir, name))
    os.rmdir(workdir)
    errors = {"failed": int(failed.group(1))} if failed and int(failed.group(1)) else {}
    # tps excludes the time spent connecting, as the Django side connects before its clock starts.
    return Run(done=done, seconds=done / tps, latencies_ms=latencies, errors=errors, load=load_average())


# --- invariants ------------------------------------------------------------------------------


def invariants(**expect: object) -> dict:
    """The checks after a run (in a Django child): reconciliation, no negative balance, money on
    the users' side unchanged, and whatever the scenario adds (see ``bench.payments_seed``)."""
    return child("bench.payments_seed", "check", json.dumps(expect), app_name="b_pay_check")


def invariants_line(check: dict) -> str:
    parts = [
        f"reconciliation {'ok' if check['reconcile_ok'] else 'MISMATCH'} "
        f"({check['entries']:,} entries, {check['accounts']:,} accounts)",
        f"negative wallets or escrows: {check['negative']}",
        f"money on the users' side {check['user_money']:,} fen "
        + (
            "(unchanged)"
            if check["user_money_unchanged"]
            else f"(CHANGED from {check['user_money_before']:,})"
        ),
    ]
    for line in check.get("notes", []):
        parts.append(line)
    return "; ".join(parts)


def invariants_ok(check: dict) -> bool:
    return bool(check["ok"])


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M %Z")


# --- the web servers -------------------------------------------------------------------------


class Web:
    """The production web path on 127.0.0.1: nginx (deploy/nginx.conf) -> gunicorn
    (deploy/gunicorn.conf.py, its default worker class and threads, 2 workers), psycopg2 with
    persistent connections, our database and Redis db."""

    def __init__(self, workers: int = 2) -> None:
        from . import servers

        # LOG_LEVEL as in production (INFO: one JSON access line per request, to the server's log).
        env = django_env("b_pay_web", PROXY_COUNT="1", LOG_LEVEL="INFO", **gunicorn_production())
        self.app = servers.gunicorn("pay-gunicorn", env, workers).wait_ready()
        try:
            self.proxy = servers.nginx("pay-nginx", self.app.port, self.app.port).wait_ready()
        except BaseException:
            self.app.stop()
            raise
        self.label = (
            f"nginx -> gunicorn x{workers} {gunicorn_production()['GUNICORN_WORKER_CLASS']} "
            f"x{gunicorn_production()['GUNICORN_THREADS']} threads, psycopg2 CONN_MAX_AGE=60"
        )

    @property
    def url(self) -> str:
        return self.proxy.url

    def cpu_seconds(self) -> float:
        return self.app.cpu_seconds() + self.proxy.cpu_seconds()

    def worker_pids(self) -> list[int]:
        """The gunicorn workers (children of the master), for a profiler."""
        pids = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(os.path.join(entry.path, "stat")) as f:
                        stat = f.read()
                except OSError:
                    continue
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == self.app.proc.pid:
                    pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        self.proxy.stop()
        self.app.stop()
