"""The service-layer load of the payments benchmarks: N client processes calling the services.

``python -m bench.payments_drive <transfers|grabs> <spec json>`` in a child process with the
bench's Django environment; prints one JSON line (what was done, in how long, each call's
latency, the errors by code).

Each client is its own process (forked after ``django.setup()``, before any connection is
opened) with its own database connection, as each pgbench client is: no GIL shared between
clients. Every client warms up (connects, runs the code path once or reads) before a barrier;
the clock starts when all are past it.

* ``transfers``: ``services.transfer_create`` (PIN, limits, auto-accept: one entry from wallet
  to wallet, the chat message, events) between random pairs of friends, for ``seconds``; a call counts if it
  finished before the deadline.
* ``grabs``: ``red_packets.red_packet_grab`` by ``n`` distinct users (each takes the next user
  from a shared counter) until every one of them has had an answer.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import sys
import time
import traceback


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "code", "") or getattr(exc, "default_code", "") or type(exc).__name__)


def _pair(spec: dict, rng: random.Random) -> tuple[int, int]:
    """A random pair of friends: on the ring, i and i±d (d <= k); among hot wallets, any two."""
    n, user0 = spec["n"], spec["user0"]
    i = rng.randrange(n)
    ring = spec["shape"] == "ring"
    d = rng.randint(1, spec["k"]) * rng.choice((1, -1)) if ring else rng.randint(1, n - 1)
    return user0 + 1 + i, user0 + 1 + (i + d) % n


def _transfer_client(spec: dict, barrier, start, out) -> None:
    from django.db import connection

    from payments import services

    rng = random.Random(os.getpid() ^ time.time_ns())
    latencies, errors, calls = [], {}, 0
    try:
        for _ in range(2):  # warm-up: connect, run the whole path once
            sender, receiver = _pair(spec, rng)
            services.transfer_create(sender_id=sender, receiver_id=receiver, amount=1, pin=spec["pin"])
        barrier.wait()
        calls, cpu = 0, time.process_time()
        deadline = start.value + spec["seconds"]
        while time.time() < deadline:
            sender, receiver = _pair(spec, rng)
            calls += 1
            began = time.time()
            try:
                services.transfer_create(
                    sender_id=sender, receiver_id=receiver, amount=rng.randint(1, 100), pin=spec["pin"]
                )
            except Exception as exc:
                errors[_code(exc)] = errors.get(_code(exc), 0) + 1
                continue
            ended = time.time()
            if ended <= deadline:
                latencies.append((ended - began) * 1000)
        cpu = time.process_time() - cpu
    except Exception:
        errors["crash: " + traceback.format_exc(limit=3)] = 1
        barrier.abort()
        cpu = 0.0
    finally:
        connection.close()
    out.put({"latencies": latencies, "errors": errors, "calls": calls, "cpu": cpu})


def _grab_client(spec: dict, barrier, start, counter, out) -> None:
    from django.db import connection

    from messaging import selectors as chat_selectors
    from payments import red_packets
    from payments.models import RedPacket

    latencies, outcomes, last_end, calls = [], {}, 0.0, 0
    try:
        packet = RedPacket.objects.only("id", "sender_id").get(pk=spec["packet"])  # warm-up: reads only
        chat_selectors.payment_message_access(
            user_id=spec["user0"] + 1, sender_id=packet.sender_id, kind="red_packet", object_id=packet.pk
        )
        barrier.wait()
        cpu = time.process_time()
        while True:
            with counter.get_lock():
                index = counter.value
                counter.value += 1
            if index >= spec["n"]:
                break
            calls += 1
            began = time.time()
            try:
                red_packets.red_packet_grab(user_id=spec["user0"] + 1 + index, packet_id=spec["packet"])
                code = "grabbed"
            except Exception as exc:
                code = _code(exc)
            last_end = time.time()
            outcomes[code] = outcomes.get(code, 0) + 1
            latencies.append((last_end - began) * 1000)
        cpu = time.process_time() - cpu
    except Exception:
        outcomes["crash: " + traceback.format_exc(limit=3)] = 1
        barrier.abort()
        cpu = 0.0
    finally:
        connection.close()
    out.put({"latencies": latencies, "outcomes": outcomes, "last_end": last_end, "calls": calls, "cpu": cpu})


_start = None  # the shared clock start, set by the last client to reach the barrier


def _mark_start() -> None:
    _start.value = time.time()


def run(mode: str, spec: dict) -> dict:
    global _start

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.payments_settings")
    import django

    django.setup()
    from django.db import connections

    connections.close_all()  # nothing open across the fork
    ctx = multiprocessing.get_context("fork")
    clients = spec["clients"]
    start = _start = ctx.Value("d", 0.0)
    barrier = ctx.Barrier(clients, action=_mark_start)
    out = ctx.Queue()
    if mode == "transfers":
        procs = [
            ctx.Process(target=_transfer_client, args=(spec, barrier, start, out)) for _ in range(clients)
        ]
    elif mode == "grabs":
        counter = ctx.Value("i", 0)
        procs = [
            ctx.Process(target=_grab_client, args=(spec, barrier, start, counter, out))
            for _ in range(clients)
        ]
    else:
        raise SystemExit(f"unknown mode {mode}")
    for p in procs:
        p.start()
    results = [out.get(timeout=900) for _ in procs]
    began = start.value
    for p in procs:
        p.join()
    # The clients' CPU from the barrier on (warm-up excluded), over the calls they started.
    cpu_ms_per_call = sum(r["cpu"] for r in results) * 1000 / max(1, sum(r["calls"] for r in results))
    latencies = [x for r in results for x in r["latencies"]]
    if mode == "transfers":
        errors: dict[str, int] = {}
        for r in results:
            for code, n in r["errors"].items():
                errors[code] = errors.get(code, 0) + n
        return {"done": len(latencies), "seconds": spec["seconds"], "latencies": latencies, "errors": errors,
                "cpu_ms_per_call": cpu_ms_per_call}  # fmt: skip
    outcomes: dict[str, int] = {}
    for r in results:
        for code, n in r["outcomes"].items():
            outcomes[code] = outcomes.get(code, 0) + n
    seconds = max(r["last_end"] for r in results) - began
    return {"done": len(latencies), "seconds": seconds, "latencies": latencies, "outcomes": outcomes,
            "cpu_ms_per_call": cpu_ms_per_call}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], json.loads(sys.argv[2]))))
