"""Prometheus metrics beyond django-prometheus's HTTP ones: sockets and Celery tasks.

With several server processes set ``PROMETHEUS_MULTIPROC_DIR`` (as docker-compose does) and
``/metrics`` sums the processes; a Celery worker on another host serves its own metrics on
``CELERY_METRICS_PORT``.
"""

from __future__ import annotations

import os
import time

from celery import signals
from prometheus_client import Counter, Gauge, Histogram

open_websockets = Gauge(
    "superapp_websockets_open", "WebSocket connections currently open", multiprocess_mode="livesum"
)
websocket_connections = Counter(
    "superapp_websocket_connections_total", "WebSocket connections accepted or refused", ["outcome"]
)
celery_tasks = Counter("superapp_celery_tasks_total", "Celery tasks run", ["task", "state"])
celery_task_seconds = Histogram("superapp_celery_task_seconds", "Celery task run time", ["task"])
# Alert on any increase: moments' feed cache could not bump a version (Redis refused or timed
# out). before_commit: a write that removes something was refused (503), or one that adds was
# made with its after-commit bump alone; after_commit: versions stay pending until they expire.
moments_feed_cache_bump_failures = Counter(
    "superapp_moments_feed_cache_bump_failures_total",
    "Moments feed cache version bumps that failed (after a retry for after_commit)",
    ["when"],
)

_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_prerun(task_id=None, task=None, **_kwargs):
    _started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _task_postrun(task_id=None, task=None, state=None, **_kwargs):
    started = _started.pop(task_id, None)
    name = getattr(task, "name", "unknown")
    # An eager run (tests, the embedded default) with task_eager_propagates re-raises the task's
    # exception before Celery records a state, so postrun gets None where a worker says FAILURE.
    celery_tasks.labels(task=name, state=state or "FAILURE").inc()
    if started is not None:
        celery_task_seconds.labels(task=name).observe(time.perf_counter() - started)


@signals.worker_init.connect
def _serve_worker_metrics(**_kwargs):  # pragma: no cover - only in a real worker process
    """Serve the worker's metrics on CELERY_METRICS_PORT from the worker's main process.

    Pool processes count into PROMETHEUS_MULTIPROC_DIR; the main process sums them.
    """
    port = os.environ.get("CELERY_METRICS_PORT")
    if not port:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(int(port), registry=registry) if registry else start_http_server(int(port))
