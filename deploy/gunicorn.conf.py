"""gunicorn for the REST (WSGI) server: ``gunicorn -c deploy/gunicorn.conf.py superapp.wsgi``.

Behind nginx (deploy/nginx.conf), which buffers requests and responses, so a slow client never
holds a worker thread. Threaded workers (gthread), measured in bench/ (BENCHMARKS.md, "topology"):
against sync workers with the same number of request slots they served more requests per second
for the same CPU per request, and they keep nginx's upstream connections alive.
Environment knobs: ``GUNICORN_BIND`` (0.0.0.0:8000), ``GUNICORN_WORKERS`` (one per core, at least
2), ``GUNICORN_WORKER_CLASS`` (gthread), ``GUNICORN_THREADS`` (4), ``GUNICORN_TIMEOUT`` (30 s).
Each thread keeps one PostgreSQL connection (psycopg2, CONN_MAX_AGE=60): workers x threads.
"""

import gc
import multiprocessing
import os
import shutil
from pathlib import Path

bind = os.environ.get("GUNICORN_BIND") or "0.0.0.0:8000"
workers = int(os.environ.get("GUNICORN_WORKERS") or max(2, multiprocessing.cpu_count()))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or "gthread"
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 30)
graceful_timeout = 20
# Longer than nginx's upstream keepalive_timeout (60 s), so that nginx never reuses a connection
# the worker has just closed. (Sync workers would close every connection after one request.)
keepalive = 75
# Recycle workers now and then, so a slow leak in any library cannot grow without bound.
max_requests = 20000
max_requests_jitter = 2000
# Import Django once in the master: workers fork ready (no connection is opened at import).
preload_app = True
# The heartbeat file on tmpfs: a container's overlay filesystem can stall a worker's heartbeat.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
# Our RequestLogMiddleware writes one JSON line per request; gunicorn's access log would repeat it.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL") or "warning"
# nginx sits in front; trust its X-Forwarded-* from any address of the compose network.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or "*"
proc_name = "superapp-wsgi"


# The Prometheus multiprocess directory must exist before the app is imported (preload_app
# imports it right after this file is read).
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _metrics_dir:
    Path(_metrics_dir).mkdir(parents=True, exist_ok=True)


def on_starting(server):
    """Start with an empty Prometheus multiprocess directory (a dead process's files would count)."""
    if _metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
        Path(_metrics_dir).mkdir(parents=True, exist_ok=True)


def pre_fork(server, worker):
    """Move everything the master has loaded (Django, the apps, the URL map: ~155,000 objects)
    out of the collector's reach before forking, as Instagram does: a worker's full collections
    otherwise walk all of it every few hundred requests (~0.4 ms per request, measured in
    bench/payments_profile.py), and touching those objects un-shares their memory pages."""
    gc.freeze()


def child_exit(server, worker):
    """A dead worker's live gauges must stop counting in /metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
