"""Scenario ``moments``: the home feed under load, and how fast a post reaches every timeline.

1. **Feed read.** ``GET /api/v1/moments/feed`` (a page of 20 posts, each with its images, likes
   and comments) for ``mviewer``, who has 500 friends, with 20,000 posts in the database
   (``bench.moments_seed``), at 64 connections, on the production topology (nginx -> gunicorn).
   Anchor, same run, same server: the bare Django view doing one primary-key SELECT
   (``bench.anchors.pk_select_view``) under the same gunicorn, straight and behind the same nginx.
   Goal: at least 0.5x the anchor's req/s. The feed is measured with the first-page cache on
   (``moments.feed_cache``, production's default) and, on a server of its own in the same rounds,
   with ``MOMENTS_FEED_CACHE=false`` (every read runs the page statement, as every miss does);
   the cache-on server's hit rate is read from its ``/metrics``. The load is reads only.
2. **Fan-out.** From ``POST /api/v1/moments/posts`` until the post is in the timeline of every
   friend (polled in PostgreSQL every 2 ms), for authors with 500 and 5,000 friends, through the
   production web server and a real Celery worker (prefork, 2 processes). 500 friends are written
   in the publishing transaction (up to ``MOMENTS_FANOUT_INLINE_MAX`` = 1,000 readers), 5,000 by the
   task. Anchor: the same rows written by one ``INSERT ... SELECT`` from the friendship table in
   psql-like SQL (no Django, no Celery), measured in the same run. Goal: under 1 s for 5,000.

Runs in the bench database (``BENCH_DB_NAME``, default ``superapp_bench``) and Redis db
``BENCH_REDIS_URL``; the Moments team runs it with ``BENCH_DB_NAME=superapp_bench_moments
BENCH_REDIS_URL=redis://127.0.0.1:6379/5``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import load
from .env import ROOT, RUN_DIR, database_url, http_json, login, server_env
from .measure import Target, compare, ratio, save, table
from .stacks import PSYCOPG2_PERSISTENT, Anchor, Running, Stack, gunicorn_production, start_all
from .topology import PRODUCTION

CONNECTIONS = 64
# The production server with the feed cache turned off, no proxy: what every miss costs.
NO_CACHE = Stack("prod_nocache", "wsgi", PSYCOPG2_PERSISTENT, proxy=False,
                 gunicorn_env={**gunicorn_production(), "MOMENTS_FEED_CACHE": "false"})  # fmt: skip
FANOUT_REPEATS = 5


def run(*, rounds: int, seconds: float) -> str:
    _seed()
    items: list = []
    worker = None
    try:
        items.append(anchor := Anchor("django", proxy=True))
        items.append(prod := Running(PRODUCTION))
        items.append(nocache := Running(NO_CACHE))
        worker = _start_worker()
        start_all(items)
        _wait_worker(worker)
        viewer = login(prod.url, "mviewer")
        viewer_id = _me(prod.url, viewer)
        auth = {"Authorization": f"Bearer {viewer}"}
        status, page = http_json("GET", prod.url + "/api/v1/moments/feed", token=viewer)
        if status != 200 or len(page["results"]) != 20:
            raise SystemExit(f"feed answered {status} with {len(page.get('results', []))} posts")
        shown = sum(len(p["likes"]) + len(p["comments"]) for p in page["results"])
        images = sum(len(p["media"]) for p in page["results"])
        anchor_path = anchor.path.format(user_id=viewer_id)

        anchor_direct = Target("anchor_django", anchor.server_label, anchor.server.url + anchor_path,
                               anchor.server.cpu_seconds, db_app="b_anchor_django")  # fmt: skip
        anchor_proxy = Target(
            "anchor_django_nginx", anchor.label, anchor.url + anchor_path, anchor.cpu_seconds
        )
        feed_direct = Target("feed_direct", PRODUCTION.label.replace("nginx -> ", "") + " (no proxy)",
                             prod.app.url + "/api/v1/moments/feed", prod.app.cpu_seconds, auth)  # fmt: skip
        feed_prod = Target("feed_production", PRODUCTION.label, prod.url + "/api/v1/moments/feed",
                           prod.cpu_seconds, auth, f"b_{PRODUCTION.key}")  # fmt: skip
        feed_nocache = Target("feed_nocache", NO_CACHE.label + ", MOMENTS_FEED_CACHE=false",
                              nocache.app.url + "/api/v1/moments/feed", nocache.app.cpu_seconds, auth,
                              f"b_{NO_CACHE.key}")  # fmt: skip
        targets = [anchor_direct, feed_direct, feed_nocache, anchor_proxy, feed_prod]
        cache_before = _cache_outcomes(prod.app.url)
        print(f"moments: feed, {len(targets)} targets at {CONNECTIONS} connections, {rounds} rounds of "
              f"{seconds:g}s", flush=True)  # fmt: skip
        app = f"b_{PRODUCTION.key}"
        pg_ms = _rounds(targets, rounds=rounds, seconds=seconds, pg_apps={
            "anchor_django": "b_anchor_django", "anchor_django_nginx": "b_anchor_django",
            "feed_direct": app, "feed_production": app, "feed_nocache": f"b_{NO_CACHE.key}"})  # fmt: skip
        cache_after = _cache_outcomes(prod.app.url)
        if _cache_outcomes(nocache.app.url):
            raise SystemExit("the cache-off server used the feed cache")

        print("moments: fan-out", flush=True)
        fanout = {n: _fan_out(prod.url, f"mpub{n}", n) for n in (500, 5000)}
        floor = {n: _sql_floor(f"mpub{n}") for n in (500, 5000)}
    finally:
        if worker is not None:
            _stop(worker)
        for item in reversed(items):
            item.stop()

    rows = [
        ("anchor", anchor_direct, ""),
        ("**feed, cache on, same server**", feed_direct,
         f"**{compare(feed_direct, anchor_direct, 'the Django anchor')}**"),
        ("feed, cache OFF (every read runs the page statement)", feed_nocache,
         compare(feed_nocache, anchor_direct, "the Django anchor")),
        ("anchor", anchor_proxy, compare(anchor_proxy, anchor_direct, "the Django anchor") + " (the proxy's cost)"),
        ("feed, cache on, production (nginx)", feed_prod,
         compare(feed_prod, anchor_proxy, "the anchor behind the same nginx")),
    ]  # fmt: skip
    goal = ratio(feed_direct, anchor_direct)
    goal_off = ratio(feed_nocache, anchor_direct)
    served = {k: cache_after.get(k, 0) - cache_before.get(k, 0) for k in ("hit", "miss", "stored", "skipped")}
    reads = served["hit"] + served["miss"]
    hit_rate = served["hit"] / reads if reads else 0.0
    fan_rows = [
        "| friends | path | publish answered (median) | in every timeline: median | max | "
        "anchor: one INSERT ... SELECT of the rows (median) | ratio |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n, result in fanout.items():
        # MOMENTS_FANOUT_INLINE_MAX (default 1,000 readers: the author and the friends)
        path = "in the publishing transaction" if n + 1 <= 1000 else "Celery task after commit"
        med = statistics.median(result["done"])
        fan_rows.append(
            f"| {n:,} | {path} | {statistics.median(result['answered']) * 1000:.0f} ms | {med * 1000:.0f} ms | "
            f"{max(result['done']) * 1000:.0f} ms | {floor[n] * 1000:.1f} ms | {med / floor[n]:.1f}x |"
        )
    worst = max(fanout[5000]["done"])
    text = "\n".join([
        f"### moments: home feed at {CONNECTIONS} connections (500 friends, 20,000 posts in the database)",
        "",
        f"A page is 20 posts with {images} images and {shown} likes and comments, rendered for the viewer "
        "(2 queries on a miss: the session, then the page in one prepared statement, moments/feed.py; "
        "on a hit the session only, and one Redis round trip, moments/feed_cache.py).",
        "",
        table(rows),
        "",
        f"Goal (at least 0.5x the Django anchor's req/s under the same server): "
        f"{'met' if goal >= 0.5 else 'NOT met'} with the first-page cache on ({goal:.2f}x); "
        f"cache off: {goal_off:.2f}x.",
        "",
        f"Feed cache (moments/feed_cache.py) on the cache-on server during the measured rounds: "
        f"{served['hit']:,.0f} hits, {served['miss']:,.0f} misses ({served['stored']:,.0f} stored, "
        f"{served['skipped']:,.0f} not stored): **hit rate {hit_rate:.1%}**. The load is reads only "
        "(no write ends an entry while it runs): the cache-on figure is a warm cache's, the "
        "cache-off figure every miss's. The cache-off server also runs the page statement on every read.",
        "",
        "PostgreSQL CPU per request (its backends serving each server, median of the rounds; not in "
        "\"server CPU\", on the same 2 cores): "
        + ", ".join(f"{t.key} {statistics.median(pg_ms[t.key]):.2f} ms" for t in targets)
        + ".",
        "",
        f"### moments: from publish to every friend's timeline ({FANOUT_REPEATS} posts each)",
        "",
        *fan_rows,
        "",
        f"Goal (under 1 s for 5,000 friends): {'met' if worst < 1 else 'NOT met'} (worst {worst * 1000:.0f} ms).",
    ])  # fmt: skip
    save("moments", {"targets": targets, "fanout": fanout, "floor": floor})
    return text


def _cache_outcomes(base_url: str) -> dict[str, float]:
    """The feed cache's counters (``superapp_moments_feed_cache_total``) summed over a server's
    processes, from its Prometheus endpoint."""
    import urllib.request

    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith('superapp_moments_feed_cache_total{outcome="'):
            outcome = line.split('"')[1]
            counts[outcome] = counts.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def _rounds(
    targets: list[Target], *, rounds: int, seconds: float, pg_apps: dict[str, str]
) -> dict[str, list[float]]:
    """``measure.run_rounds`` at 64 connections: interleaved, so a burst hits every target alike.

    Also returns, per target, the CPU that PostgreSQL's backends serving it spent per request
    (``pg_apps``: target key -> application_name), which "server CPU" leaves out."""
    pg_ms: dict[str, list[float]] = {target.key: [] for target in targets}
    for target in targets:
        load.wrk(target.url, 1.0, target.headers, connections=CONNECTIONS)
    for round_no in range(rounds):
        shift = round_no % len(targets)
        for target in targets[shift:] + targets[:shift]:
            before, pg_before = target.cpu_seconds(), _pg_cpu(pg_apps[target.key])
            result = load.wrk(
                target.url, seconds, target.headers, connections=CONNECTIONS, watch_app=target.db_app
            )
            result.cpu_ms_per_request = (target.cpu_seconds() - before) * 1000 / max(result.requests, 1)
            pg_ms[target.key].append(
                (_pg_cpu(pg_apps[target.key]) - pg_before) * 1000 / max(result.requests, 1)
            )
            target.results.append(result)
        print(f"  round {round_no + 1}/{rounds} done", flush=True)
    return pg_ms


_probe = None


def _pg_cpu(application_name: str) -> float:
    """User + system CPU seconds of the PostgreSQL backends (same machine) of one application."""
    global _probe
    if _probe is None:
        _probe = _connect()
    with _probe.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            [application_name],
        )
        pids = [row[0] for row in cursor.fetchall()]
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _seed() -> None:
    env = server_env(db=PSYCOPG2_PERSISTENT, app_name="b_moments_seed")
    subprocess.run([sys.executable, "-m", "bench.moments_seed"], cwd=ROOT, env=env, check=True)


def _me(base_url: str, token: str) -> int:
    status, body = http_json("GET", base_url + "/api/v1/me", token=token)
    if status != 200:
        raise SystemExit(f"GET /api/v1/me answered {status}: {body}")
    return body["id"]


def _start_worker() -> subprocess.Popen:
    """The Celery worker as docker-compose runs it (prefork, 2 processes, CONN_MAX_AGE=60)."""
    env = server_env(db=PSYCOPG2_PERSISTENT, app_name="b_moments_worker")
    log = (RUN_DIR / "moments-celery.log").open("wb")
    argv = [sys.executable, "-m", "celery", "-A", "superapp", "worker", "--loglevel", "INFO", "--concurrency", "2",
            "--without-gossip", "--without-mingle", "-n", "moments-bench@%h"]  # fmt: skip
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def _wait_worker(proc: subprocess.Popen, timeout: float = 60) -> None:
    log = RUN_DIR / "moments-celery.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with {proc.returncode}; see {log}")
        if b" ready." in log.read_bytes():
            return
        time.sleep(0.2)
    raise RuntimeError(f"the Celery worker is not ready after {timeout}s; see {log}")


def _stop(proc: subprocess.Popen) -> None:
    import os
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own process group only
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _connect():
    import psycopg2

    connection = psycopg2.connect(database_url("b_moments_probe"))
    connection.autocommit = True
    return connection


def _fan_out(base_url: str, handle: str, friends: int) -> dict[str, list[float]]:
    """Publish ``FANOUT_REPEATS`` posts as ``handle``; time until each is in every timeline."""
    token = login(base_url, handle)
    result: dict[str, list[float]] = {"answered": [], "done": []}
    probe = _connect()
    try:
        with probe.cursor() as cursor:
            for i in range(FANOUT_REPEATS + 1):  # the first one warms up, and is not counted
                started = time.monotonic()
                status, body = http_json(
                    "POST", base_url + "/api/v1/moments/posts", {"text": f"bench {i}"}, token
                )
                answered = time.monotonic() - started
                if status != 201:
                    raise SystemExit(f"publish answered {status}: {body}")
                while True:
                    cursor.execute("SELECT count(*) FROM moments_timeline WHERE post_id = %s", [body["id"]])
                    if cursor.fetchone()[0] >= friends + 1:
                        break
                    if time.monotonic() - started > 30:
                        raise SystemExit(f"post {body['id']} not in every timeline after 30 s")
                    time.sleep(0.002)
                done = time.monotonic() - started
                if i:
                    result["answered"].append(answered)
                    result["done"].append(done)
                http_json("DELETE", f"{base_url}/api/v1/moments/posts/{body['id']}", token=token)
    finally:
        probe.close()
    return result


def _sql_floor(handle: str) -> float:
    """The least the database needs: one post row and its timeline rows in one INSERT ... SELECT."""
    probe = _connect()
    probe.autocommit = False
    times = []
    try:
        with probe.cursor() as cursor:
            for _ in range(FANOUT_REPEATS + 1):
                started = time.monotonic()
                cursor.execute(
                    "INSERT INTO moments_post (author_id, kind, text, visibility, link_url, link_title, "
                    "link_description, link_thumb_url, location_name, created_at, hidden_reason) "
                    "SELECT id, 'text', 'floor', 'friends', '', '', '', '', '', now(), '' FROM accounts_user "
                    "WHERE handle = %s RETURNING id, author_id",
                    [handle],
                )
                post_id, author_id = cursor.fetchone()
                cursor.execute(
                    "INSERT INTO moments_timeline (user_id, post_id, author_id, created) "
                    "SELECT friend_id, %s, %s, now() FROM accounts_friendship WHERE user_id = %s "
                    "UNION ALL SELECT %s, %s, %s, now()",
                    [post_id, author_id, author_id, author_id, post_id, author_id],
                )
                probe.commit()
                times.append(time.monotonic() - started)
                cursor.execute("DELETE FROM moments_timeline WHERE post_id = %s", [post_id])
                cursor.execute("DELETE FROM moments_post WHERE id = %s", [post_id])
                probe.commit()
    finally:
        probe.close()
    return statistics.median(times[1:])
