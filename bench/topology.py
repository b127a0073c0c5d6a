"""Scenario ``topology``: where REST is served and how the database is reached.

Compares, all behind the same nginx (``deploy/nginx.conf``) and measured in one run on
authenticated ``GET /api/v1/me``:

1. everything on one ASGI server (nginx -> uvicorn), with psycopg2 and ``CONN_MAX_AGE=0`` (the
   only correct psycopg2 setting under ASGI) and with psycopg 3 and Django's pool;
2. REST on a WSGI server, WebSocket on an ASGI server (nginx -> gunicorn, nginx -> uvicorn for
   /ws/), with psycopg2 persistent (``CONN_MAX_AGE=60``), psycopg2 per request, psycopg 3 with
   Django's pool, and psycopg 3 persistent;
3. so the driver/connection comparison is read off both topologies.

Correctness checks in the same run: every stack answers a WebSocket handshake through nginx, and
psycopg2 with ``CONN_MAX_AGE=60`` under ASGI is shown to leak connections (bounded run).
"""

from __future__ import annotations

import time

from . import load
from .env import connections_by_app, login
from .measure import Target, compare, run_rounds, save, table
from .stacks import (
    PSYCOPG2_PER_REQUEST,
    PSYCOPG2_PERSISTENT,
    PSYCOPG2_PERSISTENT_UNCHECKED,
    PSYCOPG3_PERSISTENT,
    PSYCOPG3_POOL,
    SYNC,
    Anchor,
    Running,
    Stack,
    gunicorn_production,
    start_all,
)
from .wscheck import websocket_handshake

# The production default: what docker-compose runs (deploy/gunicorn.conf.py's worker class) and
# settings.py defaults to under WSGI.
PRODUCTION = Stack("prod", "wsgi", PSYCOPG2_PERSISTENT, gunicorn_env=gunicorn_production())


PROD_GUNICORN = gunicorn_production()

CANDIDATES = [
    # (1) everything on one ASGI server; psycopg2 must not persist connections there.
    Stack("asgi_pg2_cma0", "asgi", PSYCOPG2_PER_REQUEST),
    Stack("asgi_pg3_pool", "asgi", PSYCOPG3_POOL),
    # (2) REST on gunicorn (production worker class), /ws/ on uvicorn; (3) the driver and the
    # connection handling, including Django's per-request connection check (CONN_HEALTH_CHECKS).
    Stack("wsgi_pg2_cma60", "wsgi", PSYCOPG2_PERSISTENT, gunicorn_env=PROD_GUNICORN),
    Stack("wsgi_pg3_pool", "wsgi", PSYCOPG3_POOL, gunicorn_env=PROD_GUNICORN),
    Stack("wsgi_pg3_cma60", "wsgi", PSYCOPG3_PERSISTENT, gunicorn_env=PROD_GUNICORN),
    Stack("wsgi_pg2_cma60_nohc", "wsgi", PSYCOPG2_PERSISTENT_UNCHECKED, gunicorn_env=PROD_GUNICORN),
    # gunicorn's worker classes: 2 sync workers, and 8 (the request slots of 2 gthread x 4).
    Stack("wsgi_sync_pg2_cma60", "wsgi", PSYCOPG2_PERSISTENT, gunicorn_env=SYNC),
    Stack("wsgi_sync8_pg2_cma60", "wsgi", PSYCOPG2_PERSISTENT, gunicorn_env=SYNC, workers=8),
]


def run(*, rounds: int, seconds: float, only: list[str] | None = None) -> str:
    items: list = []
    try:
        anchor = Anchor("django", proxy=True)
        items.append(anchor)
        stacks = []
        for stack in CANDIDATES:
            if only and stack.key not in only:
                continue
            stacks.append(Running(stack))
            items.append(stacks[-1])
        start_all(items)
        token = login(stacks[0].url)
        user_id = _user_id(stacks[0].url, token)
        auth = {"Authorization": f"Bearer {token}"}
        ws_ok = {running.stack.key: websocket_handshake(running.url, token) for running in stacks}

        anchor_t = Target(
            "anchor_django_nginx",
            anchor.label,
            anchor.url + anchor.path.format(user_id=user_id),
            anchor.cpu_seconds,
            db_app="b_anchor_django",
        )
        subjects = [
            Target(r.stack.key, r.stack.label, r.url + "/api/v1/me", r.cpu_seconds, auth, f"b_{r.stack.key}")
            for r in stacks
        ]
        print(f"topology: {len(subjects)} stacks + the anchor, {rounds} rounds of {seconds:g}s", flush=True)
        run_rounds([anchor_t, *subjects], rounds=rounds, seconds=seconds)
    finally:
        for item in reversed(items):
            item.stop()
    leak = leak_check(token)

    rows = [("anchor", anchor_t, "")]
    for subject in subjects:
        topology = "(1) all ASGI" if subject.key.startswith("asgi") else "(2) WSGI + ASGI"
        rows.append((f"/me {topology}", subject, compare(subject, anchor_t, "the anchor")))
    report = [
        "### topology: authenticated GET /api/v1/me, every variant behind the same nginx",
        "",
        table(rows),
        "",
        "Peak PostgreSQL connections held by each stack's HTTP server during its runs: "
        + ", ".join(f"{s.key} {s.peak_db}" for s in subjects)
        + ".",
        "WebSocket handshake through nginx (subprotocol auth): "
        + ", ".join(f"{key} {'ok' if ok else 'FAILED'}" for key, ok in ws_ok.items())
        + ".",
        "",
        leak,
    ]
    text = "\n".join(report)
    save("topology", {"targets": [anchor_t, *subjects], "ws": ws_ok, "leak": leak})
    return text


def leak_check(token: str, seconds: float = 3.0, cap: int = 30) -> str:
    """psycopg2 with CONN_MAX_AGE=60 under ASGI: every request's connection outlives it.

    Bounded: 4 connections of load for a few seconds, stopped early past ``cap`` database
    connections, so that a shared PostgreSQL keeps its slots.
    """
    running = Running(
        Stack("asgi_pg2_cma60", "asgi", PSYCOPG2_PER_REQUEST, proxy=False, settings="bench.leak_settings")
    )
    try:
        running.ready()
        result = load.wrk(
            running.url + "/api/v1/me",
            seconds,
            {"Authorization": f"Bearer {token}"},
            connections=4,
            watch_app="b_asgi_pg2_cma60",
            max_db_connections=cap,
        )
        time.sleep(1.0)
        idle = connections_by_app().get("b_asgi_pg2_cma60", 0)
    finally:
        running.stop()
    how = f"stopped early past {cap}" if result.stopped_early else f"{seconds:g}s"
    return (
        f"Leak check, uvicorn x2 with psycopg2 and CONN_MAX_AGE=60 (which settings.py now refuses under "
        f"ASGI; forced by bench/leak_settings.py): {result.requests} "
        f"requests from 4 clients ({how}) opened up to {result.peak_db_connections} connections, and "
        f"{idle} were still open 1 s after the load stopped (a WSGI worker holds exactly one)."
    )


def _user_id(base_url: str, token: str) -> int:
    from .env import http_json

    status, body = http_json("GET", base_url + "/api/v1/me", token=token)
    if status != 200:
        raise SystemExit(f"GET /api/v1/me answered {status}: {body}")
    return body["id"]
