"""Start and stop the servers a benchmark drives: gunicorn, uvicorn and nginx, on 127.0.0.1.

Each server runs in its own process group (so that stopping it stops its workers) with a log
file under the run directory; ports are picked free. gunicorn runs with ``deploy/gunicorn.conf.py``
and nginx with ``deploy/nginx.conf``, i.e. the production configs, with addresses rewritten.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .env import ROOT, RUN_DIR

DEPLOY = ROOT / "deploy"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(wanted: Callable[[str, int], bool]) -> float:
    """User + system CPU of the live processes for which ``wanted(name, process group)`` holds
    (``/proc/<pid>/stat``)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if wanted(name, int(fields[2])):
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / _CLOCK_TICKS


class Server:
    def __init__(
        self, name: str, argv: list[str], env: dict[str, str] | None, port: int, ready_path: str = "/healthz"
    ) -> None:
        self.name, self.port, self.ready_path = name, port, ready_path
        self.log_path = RUN_DIR / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in this server's process group (workers too)."""
        return cpu_seconds(lambda name, pgrp: pgrp == self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group only
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self._log.close()


def gunicorn(
    name: str,
    env: dict[str, str],
    workers: int,
    app: str = "superapp.wsgi:application",
    ready_path: str = "/healthz",
) -> Server:
    """gunicorn with the production config file; bind and worker count given here."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(DEPLOY / "gunicorn.conf.py"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        app,
    ]
    return Server(name, argv, env, port, ready_path)


def uvicorn(
    name: str,
    env: dict[str, str] | None,
    workers: int,
    app: str = "superapp.asgi:application",
    ready_path: str = "/healthz",
) -> Server:
    """uvicorn with the production command line (deploy/asgi.sh's flags)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        *UVICORN_FLAGS,
    ]
    return Server(name, argv, env, port, ready_path)


# Kept identical to deploy/asgi.sh (checked by bench.servers.check_uvicorn_flags).
UVICORN_FLAGS = [
    "--no-access-log",
    "--lifespan",
    "off",
    "--ws-max-size",
    "65536",
    "--ws-per-message-deflate",
    "false",
    "--proxy-headers",
    "--timeout-keep-alive",
    "75",
    "--timeout-graceful-shutdown",
    "20",
]


def check_uvicorn_flags() -> None:
    script = (DEPLOY / "asgi.sh").read_text()
    missing = [flag for flag in UVICORN_FLAGS if flag not in script]
    if missing:
        raise SystemExit(f"deploy/asgi.sh and bench.servers.UVICORN_FLAGS differ: {missing}")


def nginx(name: str, wsgi_port: int, asgi_port: int) -> Server:
    """nginx running deploy/nginx.conf, its upstreams pointed at local ports.

    The production file is a ``conf.d`` server file (inside ``http {}``); it is wrapped here in a
    main config with one worker process, as the official image's nginx.conf wraps it.
    """
    port = free_port()
    home = RUN_DIR / name
    for sub in ("static", "media", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    site = (DEPLOY / "nginx.conf").read_text()
    replacements = {
        "server wsgi:8000": f"server 127.0.0.1:{wsgi_port}",
        "server asgi:8001": f"server 127.0.0.1:{asgi_port}",
        "listen 80;": f"listen 127.0.0.1:{port};",
        "/srv/static/": f"{home}/static/",
        "/srv/media/": f"{home}/media/",
        "/var/log/nginx/access.log": f"{home}/access.log",
    }
    for old, new in replacements.items():
        if old not in site:
            raise SystemExit(f"deploy/nginx.conf no longer contains {old!r}; update bench/servers.py")
        site = site.replace(old, new)
    (home / "site.conf").write_text(site)
    main = f"""
worker_processes 1;
pid {home}/nginx.pid;
error_log {home}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 65;
    client_body_temp_path {home}/tmp/body;
    proxy_temp_path {home}/tmp/proxy;
    fastcgi_temp_path {home}/tmp/fastcgi;
    uwsgi_temp_path {home}/tmp/uwsgi;
    scgi_temp_path {home}/tmp/scgi;
    include {home}/site.conf;
}}
"""
    (home / "nginx.conf").write_text(main)
    argv = ["nginx", "-p", str(home), "-c", str(home / "nginx.conf"), "-g", "daemon off;"]
    return Server(name, argv, None, port, "/healthz")
