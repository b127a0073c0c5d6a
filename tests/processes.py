"""Real server and worker processes for cross-process tests (production settings, Redis)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def production_env(**extra: str) -> dict[str, str]:
    """Environment for a child process: production settings on the test database and Redis."""
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DJANGO_SETTINGS_MODULE="superapp.settings",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        SECRET_KEY=settings.SECRET_KEY,
        SECURE_SSL_REDIRECT="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def asgi_servers(count: int, **extra_env: str):
    """Start ``count`` uvicorn processes sharing one Redis channel layer; yield their base URLs."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    procs, urls = [], []
    try:
        for _ in range(count):
            port = free_port()
            env = production_env(CHANNELS_PREFIX=prefix, **extra_env)
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "superapp.asgi:application",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--no-access-log",
                        "--lifespan",
                        "off",
                    ],
                    cwd=ROOT,
                    env=env,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(procs, urls, strict=True):
            wait_ready(proc, url)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server {url} not ready after {timeout}s")


@contextlib.contextmanager
def celery_worker(**extra_env: str):
    """A real Celery worker (production settings, Redis broker) on a queue of its own.

    Yields the queue name; route tasks there (``celery_app.conf.task_default_queue``).
    """
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = production_env(CELERY_QUEUE=queue, **extra_env)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "superapp",
            "worker",
            "-Q",
            queue,
            "--pool",
            "solo",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        yield queue
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
