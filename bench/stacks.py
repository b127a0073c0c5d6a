"""Server stacks: the production topologies (and the anchors) as running processes on 127.0.0.1.

Worker counts are the same for every variant: 2 server processes handle HTTP (the machine has
2 cores, shared with wrk, nginx and PostgreSQL), nginx runs 1 worker, the WebSocket-only ASGI
server of the split topology runs 1 process (idle during the REST load). One exception, named in
its label: 8 sync workers, to compare gunicorn's worker classes at the same 8 request slots as
2 gthread workers of 4 threads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import servers
from .env import server_env

HTTP_WORKERS = 2

# Every variant sets every knob, so that settings.py's defaults never decide a comparison.
_CHECKED = {"DB_HEALTH_CHECKS": "true"}
PSYCOPG2_PERSISTENT = {"DB_DRIVER": "psycopg2", "CONN_MAX_AGE": "60", "DB_POOL": "0", **_CHECKED}
PSYCOPG2_PER_REQUEST = {"DB_DRIVER": "psycopg2", "CONN_MAX_AGE": "0", "DB_POOL": "0", **_CHECKED}
PSYCOPG3_POOL = {"DB_DRIVER": "psycopg", "CONN_MAX_AGE": "0", "DB_POOL": "1", **_CHECKED}
PSYCOPG3_PERSISTENT = {"DB_DRIVER": "psycopg", "CONN_MAX_AGE": "60", "DB_POOL": "0", **_CHECKED}
PSYCOPG2_PERSISTENT_UNCHECKED = {**PSYCOPG2_PERSISTENT, "DB_HEALTH_CHECKS": "false"}

DB_LABELS = {
    "psycopg2, CONN_MAX_AGE=60": PSYCOPG2_PERSISTENT,
    "psycopg2, CONN_MAX_AGE=0": PSYCOPG2_PER_REQUEST,
    "psycopg 3, pool": PSYCOPG3_POOL,
    "psycopg 3, CONN_MAX_AGE=60": PSYCOPG3_PERSISTENT,
    "psycopg2, CONN_MAX_AGE=60, no health check": PSYCOPG2_PERSISTENT_UNCHECKED,
}


SYNC = {"GUNICORN_WORKER_CLASS": "sync", "GUNICORN_THREADS": "1"}
GTHREAD = {"GUNICORN_WORKER_CLASS": "gthread", "GUNICORN_THREADS": "4"}


def gunicorn_production() -> dict[str, str]:
    """The worker class and threads deploy/gunicorn.conf.py defaults to (what production runs)."""
    conf = (servers.DEPLOY / "gunicorn.conf.py").read_text()
    worker_class = re.search(r'worker_class = os.environ.get\("GUNICORN_WORKER_CLASS"\) or "(\w+)"', conf)
    threads = re.search(r'threads = int\(os.environ.get\("GUNICORN_THREADS"\) or (\d+)\)', conf)
    if not worker_class or not threads:
        raise SystemExit("bench/stacks.py cannot read the defaults of deploy/gunicorn.conf.py")
    return {"GUNICORN_WORKER_CLASS": worker_class.group(1), "GUNICORN_THREADS": threads.group(1)}


def gunicorn_label(gunicorn_env: dict[str, str], workers: int = HTTP_WORKERS) -> str:
    server = f"gunicorn x{workers}"
    worker_class = gunicorn_env.get("GUNICORN_WORKER_CLASS")
    if worker_class == "gthread":
        server += f" gthread x{gunicorn_env.get('GUNICORN_THREADS', '1')} threads"
    elif worker_class:
        server += f" {worker_class}"
    return server


def db_label(db: dict[str, str]) -> str:
    return next(label for label, value in DB_LABELS.items() if value == db)


@dataclass(frozen=True)
class Stack:
    """One way to serve the app.

    ``rest``: ``"wsgi"`` (nginx -> gunicorn for HTTP, nginx -> uvicorn for /ws/) or ``"asgi"``
    (nginx -> uvicorn for everything). ``proxy=False`` serves HTTP straight from the app server.
    """

    key: str
    rest: str
    db: dict[str, str]
    proxy: bool = True
    gunicorn_env: dict[str, str] = field(default_factory=dict)
    settings: str = "superapp.settings"
    workers: int = HTTP_WORKERS

    @property
    def label(self) -> str:
        server = (
            gunicorn_label(self.gunicorn_env, self.workers)
            if self.rest == "wsgi"
            else f"uvicorn x{self.workers}"
        )
        path = f"nginx -> {server}" if self.proxy else server
        return f"{path}, {db_label(self.db)}"


class Running:
    """A started stack. Processes start in the constructor; ``ready()`` waits for them (so that
    several stacks boot in parallel) and then starts the proxy."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.servers: list[servers.Server] = []
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def ready(self) -> Running:
        try:
            for server in self.servers:
                server.wait_ready()
            self.entry = self.app
            if self.stack.proxy:
                self.entry = self._add(servers.nginx(f"{self.stack.key}-nginx", self.app.port, self.ws.port))
                self.entry.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        stack, key = self.stack, self.stack.key
        proxied = {"PROXY_COUNT": "1"} if stack.proxy else {}
        env = server_env(
            db=stack.db, app_name=f"b_{key}", settings=stack.settings, **proxied, **stack.gunicorn_env
        )
        if stack.rest == "wsgi":
            app = self._add(servers.gunicorn(f"{key}-gunicorn", env, stack.workers))
            ws_env = server_env(db=PSYCOPG3_POOL, app_name=f"b_{key}_ws", **proxied)
            ws = self._add(servers.uvicorn(f"{key}-uvicorn-ws", ws_env, 1))
        elif stack.rest == "asgi":
            app = ws = self._add(servers.uvicorn(f"{key}-uvicorn", env, stack.workers))
        else:
            raise ValueError(stack.rest)
        self.app, self.ws = app, ws

    def _add(self, server: servers.Server) -> servers.Server:
        self.servers.append(server)
        return server

    @property
    def url(self) -> str:
        return self.entry.url

    def cpu_seconds(self) -> float:
        return sum(server.cpu_seconds() for server in self.servers)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


class Anchor:
    """An anchor server: the bare ASGI app under uvicorn, or the pk-SELECT view under gunicorn
    (optionally behind the same nginx as the stacks)."""

    def __init__(self, kind: str, proxy: bool = False) -> None:
        if kind == "asgi":
            self.label = f"bare ASGI app, uvicorn x{HTTP_WORKERS}"
            self.path = "/"
            self.server = servers.uvicorn(
                "anchor-asgi", None, HTTP_WORKERS, app="bench.anchors:bare_asgi_app", ready_path="/"
            )
        elif kind == "django":
            # The production gunicorn config (worker class included) and the fastest way Django
            # reaches PostgreSQL under WSGI.
            gunicorn_env = gunicorn_production()
            self.label = f"Django view, 1 pk SELECT, {gunicorn_label(gunicorn_env)}, psycopg2 CONN_MAX_AGE=60"
            self.path = "/anchor/user/{user_id}"
            env = server_env(
                db=PSYCOPG2_PERSISTENT,
                app_name="b_anchor_django",
                settings="bench.anchor_settings",
                **gunicorn_env,
            )
            self.server = servers.gunicorn("anchor-django", env, HTTP_WORKERS)
        else:
            raise ValueError(kind)
        self.server_label = self.label
        self.servers = [self.server]
        self.proxy = proxy
        self.entry = self.server

    def ready(self) -> Anchor:
        try:
            self.server.wait_ready()
            if self.proxy:
                self.entry = servers.nginx(f"{self.server.name}-nginx", self.server.port, self.server.port)
                self.servers.append(self.entry)
                self.entry.wait_ready()
                self.label = "nginx -> " + self.server_label
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def url(self) -> str:
        return self.entry.url

    def cpu_seconds(self) -> float:
        return sum(server.cpu_seconds() for server in self.servers)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def start_all(items: list) -> list:
    """Start stacks/anchors (already constructed, so booting in parallel) and wait for each."""
    try:
        for item in items:
            item.ready()
    except BaseException:
        for item in items:
            item.stop()
        raise
    return items
