"""Scenario ``messaging``: chat over the /ws/ socket on the production topology, with its anchors.

Measured in one run, on PostgreSQL + Redis, through nginx (``deploy/nginx.conf``) to uvicorn
(``deploy/asgi.sh``'s flags, psycopg 3 with Django's pool; ``ASGI_WORKERS`` processes, default 1
as in docker-compose):

1. **Throughput**: messages accepted (stored, published, acknowledged) per second over the socket,
   each sender waiting for its ack before the next message: 1 sender, then 16 senders in 16
   direct chats, their receivers connected. Anchor: a bare ``INSERT`` of the same rows (the
   message and its two event rows) ``+ COMMIT`` per message, through psycopg, on 1 and on 16
   connections. Goal: 1,000 msg/s with 16 senders.
2. **Latency** from the sender's frame to the receiver's frame: in a 2-member chat (one message
   at a time), and in a 500-member group with every member connected, until the last of the 499
   others has it. Every receiving socket checks its cursors: gaps and duplicates are counted.
   Anchor: a Redis ``PUBLISH`` round trip to one subscriber. Goals: p50 < 5 ms and p99 < 20 ms
   (2 members), p99 < 150 ms (500 members), 0 gaps, 0 duplicates.
3. **Reconnect sync**: a device that missed 1,000 messages connects and pages through
   ``sync since <cursor>`` until caught up; the time from opening the socket to the last event.
4. **Where the CPU goes**: the 16 senders once more against the same app with ``message.send``
   answered without the database (``bench/messaging_nodb.py``): the socket side alone, so the
   report can say what the send's database work costs per message, beside it.

The load generator is this one asyncio process, one socket per device, on ``websockets``' sans-I/O
protocol (``_SocketProtocol``): every frame of every socket is parsed (orjson) and its cursor
checked as it arrives, without a task wake-up per frame; it offers permessage-deflate as browsers
do (the server declines it). The 500-member row also reports the CPU per group message of the
ASGI server (its process group) and of this process: load-independent evidence.

Uses only the database ``superapp_msg_bench`` (``MSG_BENCH_DB``) and Redis db 6
(``MSG_BENCH_REDIS_URL``). Run: ``python -m bench.messaging_chat`` (or ``python -m bench messaging``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

import orjson
from websockets.frames import Frame, Opcode

from . import env, servers
from .env import ROOT, RUN_DIR
from .measure import save

DB_NAME = os.environ.get("MSG_BENCH_DB", "superapp_msg_bench")
REDIS_URL = os.environ.get("MSG_BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
ASGI_WORKERS = int(os.environ.get("ASGI_WORKERS", "1"))
SENDERS = 16
LATENCY_MESSAGES = 500
GROUP_MESSAGES = 40
SYNC_MESSAGES = 1000

if not DB_NAME.startswith("superapp_msg"):
    raise SystemExit("MSG_BENCH_DB must start with superapp_msg (never a shared database).")


def _db_url(app: str) -> str:
    return f"{env.PG}/{DB_NAME}?application_name={app}"


def _env(app: str, **extra: str) -> dict[str, str]:
    out = env.server_env(app_name=app, **extra)
    # Pub/Sub channels are shared by every Redis database: a prefix of this run's own keeps other
    # runs' doorbells (other benchmarks, test servers, with the same user ids) off these sockets.
    out.update(DATABASE_URL=_db_url(app), REDIS_URL=REDIS_URL, CHANNELS_PREFIX=f"msgbench.{os.getpid()}")
    return out


def _prepare() -> dict[str, Any]:
    """A fresh database and Redis db, migrated and seeded; returns the seed (ids, tokens)."""
    env.psql(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    env.psql(f'CREATE DATABASE "{DB_NAME}"')
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    setup = _env("msg_setup", DB_DRIVER="psycopg2")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=setup, check=True
    )
    out = RUN_DIR / "messaging-seed.json"
    subprocess.run([sys.executable, "-m", "bench.messaging_seed", str(out)], cwd=ROOT, env=setup, check=True)
    return json.loads(out.read_text())


# --- anchors ---------------------------------------------------------------------------------------


def _insert_anchor(connections: int, seconds: float) -> float:
    """Messages/s of a bare INSERT of one message row and two event rows + COMMIT, per message."""
    import psycopg

    payload = json.dumps({"id": 1, "conversation_id": 1, "seq": 1, "sender_id": 1, "client_msg_id": "c-1",
                          "kind": "text", "text": "hello " * 4, "content": {}, "reply_to": None, "mentions": [],
                          "mention_all": False, "forwarded": False, "created_at": "2026-01-01T00:00:00Z",
                          "recalled": False, "recalled_at": None, "recalled_by": None})  # fmt: skip
    counts = [0] * connections
    stop = time.monotonic() + seconds
    barrier = threading.Barrier(connections)

    def work(index: int) -> None:
        with psycopg.connect(_db_url("msg_anchor")) as conn:
            conn.execute("CREATE TEMP TABLE m (LIKE messaging_message INCLUDING ALL)")
            conn.execute("CREATE TEMP TABLE e (LIKE core_event INCLUDING ALL)")
            conn.commit()
            seq = 0
            barrier.wait()
            while time.monotonic() < stop:
                seq += 1
                with conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO m (id, conversation_id, seq, sender_id, client_msg_id, kind, text, content, mentions,"
                        " mention_all, forwarded, created_at) VALUES (%s, 1, %s, 1, %s, 'text', %s, '{}', '[]', false,"
                        " false, now())",
                        (seq, seq, f"c{seq}", "hello " * 4),
                    )
                    cur.executemany(
                        "INSERT INTO e (id, user_id, seq, type, data, created_at) VALUES (%s, %s, %s, 'message.new', %s, now())",
                        [(seq * 2, 1, seq, payload), (seq * 2 + 1, 2, seq, payload)],
                    )
                conn.commit()
                counts[index] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - started)


async def _publish_anchor(samples: int = 2000) -> list[float]:
    """Round trips (ms) of a Redis PUBLISH to one subscriber."""
    import redis.asyncio as aioredis

    sub_client, pub_client = aioredis.Redis.from_url(REDIS_URL), aioredis.Redis.from_url(REDIS_URL)
    pubsub = sub_client.pubsub()
    await pubsub.subscribe("msg-bench-anchor")
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    out = []
    for i in range(samples):
        t0 = time.perf_counter()
        await pub_client.publish("msg-bench-anchor", str(i))
        while True:
            got = await pubsub.get_message(timeout=1)
            if got and got["type"] == "message":
                break
        out.append((time.perf_counter() - t0) * 1000)
    await pubsub.aclose()
    await sub_client.aclose()
    await pub_client.aclose()
    return out[100:]  # warm-up


# --- socket clients ---------------------------------------------------------------------------------


class _SocketProtocol(asyncio.Protocol):
    """One client socket on ``websockets``' sans-I/O protocol (the same handshake, framing and
    permessage-deflate as its asyncio client). Each complete text message is handed to
    ``on_text`` from ``data_received``: no reader task, queue or future per frame. The asyncio
    client wakes one task per frame per socket, and with 499 sockets in one client process that
    overhead was a large part of the time until the last member had a group message."""

    def __init__(self, conn: Any) -> None:
        loop = asyncio.get_running_loop()
        self.conn = conn
        self.early: list[bytes] = []  # frames that came with the handshake, before a Client took over
        self.on_text: Any = self.early.append
        self.opened: asyncio.Future = loop.create_future()
        self.closed: asyncio.Future = loop.create_future()
        self.transport: Any = None
        self._parts: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.conn.send_request(self.conn.connect())
        self._flush()

    def _flush(self) -> None:
        for data in self.conn.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof() and not self.transport.is_closing():
                self.transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        for event in self.conn.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT or (event.opcode is Opcode.CONT and self._parts):
                    self._parts.append(event.data)
                    if event.fin:
                        parts, self._parts = self._parts, []
                        self.on_text(parts[0] if len(parts) == 1 else b"".join(parts))
            elif not self.opened.done():  # the handshake's response
                self._opened()
        if not self.opened.done() and self.conn.handshake_exc is not None:
            self._opened()
        self._flush()

    def _opened(self) -> None:
        if self.conn.handshake_exc is not None:
            self.opened.set_exception(self.conn.handshake_exc)
        else:
            self.opened.set_result(None)

    def eof_received(self) -> None:
        self.conn.receive_eof()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)


class Client:
    """One device: a socket, replies matched by ``ref``, cursor checks on every stored event.

    Every frame is parsed (orjson) and checked as it arrives: the reply to a call, or a stored
    event whose cursor must be the previous one + 1 (gaps and duplicates are counted)."""

    _refs = itertools.count(1)

    def __init__(self, protocol: _SocketProtocol, on_event=None) -> None:
        self.protocol = protocol
        self.pending: dict[int, asyncio.Future] = {}
        self.on_event = on_event
        self.last_cursor: int | None = None
        self.gaps = self.dups = 0
        protocol.on_text = self._received
        for raw in protocol.early:
            self._received(raw)
        protocol.early.clear()

    @classmethod
    async def open(cls, url: str, token: str, on_event=None) -> Client:
        from websockets.client import ClientProtocol
        from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
        from websockets.uri import parse_uri

        uri = parse_uri(url)
        conn = ClientProtocol(
            uri,
            subprotocols=["superapp.v1", f"superapp.auth.{token}"],
            extensions=enable_client_permessage_deflate(None),  # as browsers and the asyncio client offer
            max_size=2**22,
        )
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _SocketProtocol(conn), uri.host, uri.port), 30
        )
        await asyncio.wait_for(protocol.opened, 30)
        return cls(protocol, on_event)

    def _received(self, raw: bytes) -> None:
        frame = orjson.loads(raw)
        ref = frame.get("ref")
        if ref is not None and ref in self.pending:
            future = self.pending.pop(ref)
            if not future.done():
                future.set_result(frame)
            return
        cursor = frame.get("cursor")
        if cursor is not None and "data" in frame:
            if self.last_cursor is not None:
                if cursor <= self.last_cursor:
                    self.dups += 1
                elif cursor != self.last_cursor + 1:
                    self.gaps += 1
            self.last_cursor = max(cursor, self.last_cursor or 0)
        if self.on_event is not None:
            self.on_event(frame)

    async def call(self, frame: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        ref = next(self._refs)
        future = asyncio.get_running_loop().create_future()
        self.pending[ref] = future
        conn = self.protocol.conn
        conn.send_text(orjson.dumps({**frame, "ref": ref}))
        self.protocol._flush()
        return await asyncio.wait_for(future, timeout)

    async def sync_to_head(self) -> None:
        """Learn the current cursor (the next stored event must be head + 1)."""
        pong = await self.call({"type": "ping"})
        self.last_cursor = pong["cursor"]

    async def close(self) -> None:
        protocol = self.protocol
        if protocol.transport is not None and not protocol.transport.is_closing():
            try:
                protocol.conn.send_close()
                protocol._flush()
            except Exception:  # already closing
                pass
            protocol.transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(protocol.closed), 5)


def _text_frame(conversation_id: int, cmid: str, text: str = "hello hello hello hello") -> dict[str, Any]:
    return {
        "type": "message.send",
        "conversation_id": conversation_id,
        "client_msg_id": cmid,
        "kind": "text",
        "text": text,
    }


def _postgres_cpu_seconds() -> float:
    """CPU of every PostgreSQL process on this machine (the server and its backends: during a run,
    the benchmark's own work)."""
    return servers.cpu_seconds(lambda name, pgrp: name == "postgres")


async def _throughput(
    url: str, pairs: list[dict], seconds: float, tag: str, server_cpu=None
) -> tuple[float, int, dict[str, float]]:
    """Closed loop: each sender sends, waits for its ack, sends again. Returns (msg/s, errors,
    CPU ms per message accepted: the ASGI server's, PostgreSQL's, this client process's)."""
    receivers = [await Client.open(url, p["receiver"]["token"]) for p in pairs]
    senders = [await Client.open(url, p["sender"]["token"]) for p in pairs]
    counts = [0] * len(pairs)
    errors = [0]

    async def loop(index: int, until: float, counting: bool) -> None:
        sender, conv = senders[index], pairs[index]["conversation_id"]
        n = 0
        while time.monotonic() < until:
            n += 1
            reply = await sender.call(_text_frame(conv, f"{tag}-{index}-{n}-{counting}"))
            if reply.get("type") != "message.send.result":
                errors[0] += 1
            elif counting:
                counts[index] += 1

    warm = time.monotonic() + 1.0
    await asyncio.gather(*(loop(i, warm, False) for i in range(len(pairs))))
    cpu = (server_cpu() if server_cpu else 0.0, _postgres_cpu_seconds(), time.process_time())
    started = time.monotonic()
    await asyncio.gather(*(loop(i, started + seconds, True) for i in range(len(pairs))))
    elapsed = time.monotonic() - started
    done = max(sum(counts), 1)
    per_message = {
        "server": ((server_cpu() if server_cpu else 0.0) - cpu[0]) * 1000 / done,
        "postgres": (_postgres_cpu_seconds() - cpu[1]) * 1000 / done,
        "client": (time.process_time() - cpu[2]) * 1000 / done,
    }
    for c in receivers + senders:
        await c.close()
    return sum(counts) / elapsed, errors[0], per_message


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _latency_pair(url: str, pair: dict, count: int, key: str = "") -> dict[str, Any]:
    arrived: dict[str, float] = {}
    waiters: dict[str, asyncio.Future] = {}

    def on_event(frame):
        if frame.get("type") == "message.new":
            cmid = frame["data"].get("client_msg_id")
            if cmid in waiters and not waiters[cmid].done():
                arrived[cmid] = time.perf_counter()
                waiters[cmid].set_result(None)

    receiver = await Client.open(url, pair["receiver"]["token"], on_event)
    sender = await Client.open(url, pair["sender"]["token"])
    await receiver.sync_to_head()
    conv = pair["conversation_id"]
    latencies = []
    for i in range(count + 50):
        cmid = f"lat-{key}-{i}"
        waiters[cmid] = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        await sender.call(_text_frame(conv, cmid))
        await asyncio.wait_for(waiters[cmid], 30)
        if i >= 50:  # warm-up
            latencies.append((arrived[cmid] - t0) * 1000)
    result = {"latencies": latencies, "gaps": receiver.gaps, "dups": receiver.dups}
    await sender.close()
    await receiver.close()
    return result


async def _latency_group(url: str, group: dict, count: int, key: str = "", server_cpu=None) -> dict[str, Any]:
    members = group["members"]
    expected = len(members)
    state: dict[str, Any] = {}

    def on_event(frame):
        if frame.get("type") == "message.new":
            cmid = frame["data"].get("client_msg_id")
            entry = state.get(cmid)
            if entry is not None:
                entry["n"] += 1
                entry["last"] = time.perf_counter()
                if entry["first"] is None:
                    entry["first"] = entry["last"]
                if entry["n"] == expected:
                    entry["done"].set_result(None)

    clients = []
    for start in range(0, len(members), 50):
        batch = members[start : start + 50]
        clients += await asyncio.gather(*(Client.open(url, m["token"], on_event) for m in batch))
    owner = await Client.open(url, group["owner"]["token"])
    await asyncio.gather(*(c.sync_to_head() for c in clients))
    await asyncio.sleep(1)  # presence announcements settle
    conv = group["conversation_id"]
    last, first = [], []
    cpu: dict[str, float] = {}
    for i in range(count + 5):
        if i == 5:  # after warm-up: CPU of this client process and of the ASGI server per message
            cpu = {"client": time.process_time(), "server": server_cpu() if server_cpu else 0.0}
        cmid = f"grp-{key}-{i}"
        state[cmid] = {
            "n": 0,
            "first": None,
            "last": None,
            "done": asyncio.get_running_loop().create_future(),
        }
        t0 = time.perf_counter()
        await owner.call(_text_frame(conv, cmid))
        await asyncio.wait_for(state[cmid]["done"], 60)
        if i >= 5:
            last.append((state[cmid]["last"] - t0) * 1000)
            first.append((state[cmid]["first"] - t0) * 1000)
    result = {
        "last": last,
        "first": first,
        # CPU per group message, in ms: load-independent evidence of where the time goes
        "client_cpu_ms": (time.process_time() - cpu["client"]) * 1000 / count,
        "server_cpu_ms": ((server_cpu() - cpu["server"]) * 1000 / count) if server_cpu else None,
        "gaps": sum(c.gaps for c in clients),
        "dups": sum(c.dups for c in clients),
    }
    for c in [*clients, owner]:
        await c.close()
    return result


async def _reconnect_sync(url: str, pair: dict, count: int, key: str = "") -> dict[str, Any]:
    receiver = await Client.open(url, pair["receiver"]["token"])
    await receiver.sync_to_head()
    cursor = receiver.last_cursor
    await receiver.close()
    sender = await Client.open(url, pair["sender"]["token"])
    conv = pair["conversation_id"]
    sent = []
    for i in range(count):
        reply = await sender.call(_text_frame(conv, f"sync-{key}-{i}", f"missed {i}"))
        sent.append(reply["message"]["id"])
    await sender.close()
    t0 = time.perf_counter()
    device = await Client.open(url, pair["receiver"]["token"])
    got, pages, since = [], 0, cursor
    while True:
        page = await device.call({"type": "sync", "since": since, "limit": 500})
        pages += 1
        got += [e["data"]["id"] for e in page["events"] if e["type"] == "message.new"]
        since = page["cursor"]
        if not page["has_more"]:
            break
    elapsed = (time.perf_counter() - t0) * 1000
    await device.close()
    return {
        "ms": elapsed,
        "pages": pages,
        "complete": got == sent,
        "received": len(got),
        "unique": len(set(got)),
    }


async def _anchors(seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print("messaging: anchor, Redis PUBLISH round trip", flush=True)
    out["publish"] = await _publish_anchor()
    print("messaging: anchor, INSERT + COMMIT", flush=True)
    loop = asyncio.get_running_loop()
    out["insert1"] = await loop.run_in_executor(None, _insert_anchor, 1, seconds)
    out["insert16"] = await loop.run_in_executor(None, _insert_anchor, SENDERS, seconds)
    return out


async def _measure(url: str, seed: dict, seconds: float, key: str, server_cpu=None) -> dict[str, Any]:
    pairs = seed["pairs"]
    out: dict[str, Any] = {}
    print(f"messaging [{key}]: throughput, 1 sender", flush=True)
    out["tp1"] = await _throughput(url, pairs[:1], seconds, f"tp1{key}")
    print(f"messaging [{key}]: throughput, {SENDERS} senders", flush=True)
    out["tp16"] = await _throughput(url, pairs[:SENDERS], seconds, f"tp16{key}", server_cpu)
    print(f"messaging [{key}]: latency, 2 members", flush=True)
    out["pair"] = await _latency_pair(url, pairs[SENDERS], LATENCY_MESSAGES, key)
    print(f"messaging [{key}]: latency, 500 members", flush=True)
    out["group"] = await _latency_group(url, seed["group"], GROUP_MESSAGES, key, server_cpu)
    print(f"messaging [{key}]: reconnect sync of 1,000 messages", flush=True)
    out["sync"] = await _reconnect_sync(url, pairs[SENDERS], SYNC_MESSAGES, key)
    print(f"  {out['tp1'][0]:.0f} / {out['tp16'][0]:.0f} msg/s; p50 {_pct(out['pair']['latencies'], 50):.1f} ms; "
          f"500: p99 {_pct(out['group']['last'], 99):.0f} ms; sync {out['sync']['ms']:.0f} ms", flush=True)  # fmt: skip
    return out


# The channel layer variants measured (settings.py: CHANNEL_LAYER_BACKEND).
VARIANTS = [
    ("redis", "channels-redis list-based layer", {"CHANNEL_LAYER_BACKEND": "redis"}),
    (
        "pubsub",
        "Pub/Sub layer + one PUBLISH per commit (production default)",
        {"CHANNEL_LAYER_BACKEND": "pubsub"},
    ),
]
# MSG_BENCH_VARIANTS=pubsub measures only those (comma-separated keys); default: all.
_only = [k for k in os.environ.get("MSG_BENCH_VARIANTS", "").split(",") if k]
if _only:
    VARIANTS = [v for v in VARIANTS if v[0] in _only]


def _nginx(wsgi_port: int, asgi_port: int) -> servers.Server:
    """``bench.servers.nginx`` (deploy/nginx.conf, one worker) with room for 500+ sockets: each
    proxied socket holds two connections, and the stock 1,024 ``worker_connections`` stop at ~500."""
    server = servers.nginx("msg_nginx", wsgi_port, asgi_port)
    server.stop()
    home = RUN_DIR / "msg_nginx"
    conf = home / "nginx.conf"
    conf.write_text(conf.read_text().replace("worker_connections 1024;", "worker_connections 4096;"))
    argv = ["nginx", "-p", str(home), "-c", str(conf), "-g", "daemon off;"]
    server.__init__("msg_nginx", argv, None, server.port, "/healthz")
    return server


def run(*, rounds: int = 1, seconds: float = 5.0) -> str:
    seconds = max(seconds, 5.0)
    print(f"messaging: preparing {DB_NAME} (migrate, seed 534 users, 17 chats, a group of 500)", flush=True)
    seed = _prepare()
    load_before = env.load_average()
    result: dict[str, Any] = {"anchors": asyncio.run(_anchors(seconds)), "variants": {}}
    for key, _label, extra in VARIANTS:
        with _stack(key, extra) as (url, asgi):
            result["variants"][key] = asyncio.run(_measure(url, seed, seconds, key, asgi.cpu_seconds))
    if any(key == "pubsub" for key, _, _ in VARIANTS):
        result["socket_side"] = _socket_side(seed, seconds)
    result["load"] = (load_before, env.load_average())
    save("messaging", result)
    return report(result, seconds)


@contextlib.contextmanager
def _stack(key: str, extra: dict[str, str], app: str | None = None, **asgi_extra: str):
    """nginx -> uvicorn (the WebSocket) and gunicorn (REST), fresh; yields (ws URL, the ASGI server)."""
    items: list[servers.Server] = []
    try:
        asgi_env = _env("msg_asgi", DB_DRIVER="psycopg", DB_POOL="1", CONN_MAX_AGE="0", **extra, **asgi_extra)
        asgi = servers.uvicorn(
            f"msg_asgi_{key}", asgi_env, workers=ASGI_WORKERS, **({"app": app} if app else {})
        )
        wsgi = servers.gunicorn(
            f"msg_wsgi_{key}", _env("msg_wsgi", DB_DRIVER="psycopg2", CONN_MAX_AGE="60", **extra), workers=1
        )
        items += [asgi, wsgi]
        asgi.wait_ready()
        wsgi.wait_ready()
        proxy = _nginx(wsgi.port, asgi.port)
        items.append(proxy)
        proxy.wait_ready()
        yield proxy.url.replace("http://", "ws://") + "/ws/", asgi
    finally:
        for item in reversed(items):
            item.stop()


def _socket_side(seed: dict, seconds: float) -> tuple[float, int, dict[str, float]]:
    """16 senders against the production app with ``message.send`` answered without the database
    (bench/messaging_nodb.py): what the socket side alone costs and allows, the same topology
    otherwise (nginx, uvicorn, the Pub/Sub layer, receivers connected)."""
    print(f"messaging [socket side alone]: throughput, {SENDERS} senders", flush=True)
    seed_file = str(RUN_DIR / "messaging-seed.json")
    with _stack(
        "nodb",
        {"CHANNEL_LAYER_BACKEND": "pubsub"},
        app="bench.messaging_nodb:application",
        MSG_BENCH_SEED=seed_file,
        REALTIME_FRAME_BATCHING="false",
    ) as (url, asgi):
        return asyncio.run(_throughput(url, seed["pairs"][:SENDERS], seconds, "nodb", asgi.cpu_seconds))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(r: dict[str, Any], seconds: float) -> str:
    a = r["anchors"]
    pub50, pub99 = _pct(a["publish"], 50), _pct(a["publish"], 99)
    keys = [k for k, _, _ in VARIANTS if k in r["variants"]]
    labels = {k: label for k, label, _ in VARIANTS}
    v = r["variants"]

    def ok(flag: bool) -> str:
        return "met" if flag else "**NOT met**"

    def cells(fn) -> str:
        return " | ".join(fn(v[k]) for k in keys)

    def lat(x, p):
        return _pct(x["pair"]["latencies"], p)

    def grp(x, p, which="last"):
        return _pct(x["group"][which], p)

    head = " | ".join(labels[k] for k in keys)
    default = v.get("pubsub") or v[keys[0]]  # the production default (settings.CHANNEL_LAYER_BACKEND)
    best16 = max(x["tp16"][0] for x in v.values())
    lines = [
        f"### messaging: chat over /ws/ (nginx -> uvicorn x{ASGI_WORKERS}, psycopg 3 pool, Redis)",
        "",
        f"Load average before/after: {r['load'][0]} / {r['load'][1]}; {seconds:g} s per throughput run; "
        f"anchors: INSERT + COMMIT of the rows of one message (1 message + 2 events) {a['insert1']:,.0f}/s on 1 "
        f"connection, {a['insert16']:,.0f}/s on {SENDERS}; Redis PUBLISH round trip to one subscriber p50 {pub50:.2f} ms, "
        f"p99 {pub99:.2f} ms.",
        "",
        f"| measure | {head} | anchor | goal |",
        "|---|" + "---:|" * len(keys) + "---|---|",
        "| msg/s accepted, 1 sender | "
        + cells(lambda x: f"{x['tp1'][0]:,.0f} ({x['tp1'][0] / a['insert1']:.3f}x)")
        + f" | INSERT + COMMIT, 1 conn.: {a['insert1']:,.0f}/s | |",
        f"| msg/s accepted, {SENDERS} senders in {SENDERS} chats | "
        + cells(lambda x: f"{x['tp16'][0]:,.0f} ({x['tp16'][0] / a['insert16']:.3f}x)")
        + f" | INSERT + COMMIT, {SENDERS} conn.: {a['insert16']:,.0f}/s | >= 1,000: {ok(best16 >= 1000)} |",
        f"| {SENDERS} senders: CPU per message accepted, ASGI server / PostgreSQL / this client process (ms) | "
        + cells(lambda x: " / ".join(f"{x['tp16'][2][k]:.2f}" for k in ("server", "postgres", "client")))
        + " | | |",
        "| latency, 2 members, p50 / p99 (ms) | "
        + cells(
            lambda x: (
                f"{lat(x, 50):.1f} / {lat(x, 99):.1f} ({lat(x, 50) / pub50:.0f}x / {lat(x, 99) / pub99:.0f}x)"
            )
        )
        + f" | PUBLISH {pub50:.2f} / {pub99:.2f} | < 5 / < 20: {ok(lat(default, 50) < 5 and lat(default, 99) < 20)} |",
        "| latency, 500 members, until the last of 499 has it, p50 / p99 (ms) | "
        + cells(lambda x: f"{grp(x, 50):.0f} / {grp(x, 99):.0f} ({grp(x, 99) / pub99:.0f}x p99)")
        + f" | PUBLISH {pub50:.2f} / {pub99:.2f} | p99 < 150: {ok(min(grp(x, 99) for x in v.values()) < 150)} |",
        "| latency, 500 members, the first member, p50 (ms) | "
        + cells(lambda x: f"{grp(x, 50, 'first'):.0f}")
        + " | | |",
        "| 500 members: CPU per message, ASGI server / this client process (ms) | "
        + cells(lambda x: f"{_ms(x['group'].get('server_cpu_ms'))} / {_ms(x['group'].get('client_cpu_ms'))}")
        + " | | |",
        "| gaps / duplicates seen by receiving sockets | "
        + cells(
            lambda x: f"{x['pair']['gaps'] + x['group']['gaps']} / {x['pair']['dups'] + x['group']['dups']}"
        )
        + " | | 0 / 0: "
        + ok(
            all(
                x["pair"]["gaps"] + x["group"]["gaps"] + x["pair"]["dups"] + x["group"]["dups"] == 0
                for x in v.values()
            )
        )
        + " |",
        f"| reconnect: sync of {SYNC_MESSAGES:,} missed messages (connect to caught up) | "
        + cells(
            lambda x: (
                f"{x['sync']['ms']:.0f} ms, {x['sync']['pages']} pages"
                + ("" if x["sync"]["complete"] else " INCOMPLETE")
            )
        )
        + " | | |",
        "",
        f"Samples per variant: {LATENCY_MESSAGES} messages (2 members), {GROUP_MESSAGES} messages x 499 receivers "
        f"(500 members), each after warm-up; every sync returned each missed message once, in order, unless marked.",
    ]
    if "socket_side" in r and "pubsub" in v:
        rate, errors, cpu = r["socket_side"]
        full = v["pubsub"]["tp16"][2]
        lines += [
            "",
            f"Where a message's CPU goes ({SENDERS} senders, production layer): the socket side alone "
            f"(`message.send` answered without the database, bench/messaging_nodb.py; nginx, uvicorn, the "
            f"consumer's thread hop, the Pub/Sub doorbell and the frames to both members as before) accepts "
            f"{rate:,.0f} msg/s ({errors} errors) at {cpu['server']:.2f} ms of ASGI CPU and {cpu['client']:.2f} ms "
            f"of client CPU per message, each frame on its own thread hop (REALTIME_FRAME_BATCHING=false; "
            f"the real app's batches share one hop among their frames, so its socket side costs less than "
            f"this). The real app, batched, with its database work (messaging.services.message_send_many: "
            f"checks, statements, commit, push scheduling): {full['server']:.2f} ms of ASGI CPU and "
            f"{full['postgres']:.2f} ms of PostgreSQL CPU per message.",
        ]
    return "\n".join(lines)


def main() -> int:
    env.ensure_tools()
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"Machine: {env.machine()}")
    print(f"Command: python -m bench.messaging_chat {' '.join(sys.argv[1:])}")
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    text = run(seconds=seconds)
    print()
    print(text)
    shutil.rmtree(RUN_DIR, ignore_errors=True)  # logs and the seed; kept when a run fails
    return 0


if __name__ == "__main__":
    sys.exit(main())
