"""Two code trees' 2-member send-to-receive latency, in alternating rounds on one machine.

    python -m bench.messaging_ab DIR_A DIR_B [ROUNDS] [MESSAGES]

Each tree (a checkout, e.g. ``git archive <rev> | tar -x -C /tmp/a``) gets its own fresh stack of
``bench.messaging_chat`` (nginx -> uvicorn and gunicorn with the production flags), both on one
database, migrated and seeded once by this tree's code (so the trees must share the schema). The
rounds alternate A, B / B, A, each ``MESSAGES`` (150) messages after 50 of warm-up, on the same
chat; only one stack is loaded at a time. Output: each round's p50, then per tree the median of
the round p50s and the pooled p50/p99, and in how many rounds B was faster.

Why: this VM's speed drifts by +-30% within minutes, so two full runs minutes apart cannot tell a
0.3 ms change from the drift; rounds seconds apart, paired, can. Extra environment for one
side's servers only: ``A_ENV`` / ``B_ENV`` = ``"NAME=value NAME=value"`` (e.g. to compare a
setting on one tree: both directories the same).

Uses the database ``superapp_msg_ab`` (``MSG_BENCH_DB``) and Redis db 6 (``MSG_BENCH_REDIS_URL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("MSG_BENCH_DB", "superapp_msg_ab")

from . import messaging_chat as mc
from . import servers


@contextlib.contextmanager
def _stack(side: str, root: str):
    """``bench.messaging_chat``'s stack, its servers started in ``root``, with a channel prefix
    of their own (Pub/Sub channels are shared by every Redis database)."""
    extra = dict(kv.split("=", 1) for kv in os.environ.get(f"{side}_ENV", "").split())
    plain_env, plain_root = mc._env, servers.ROOT

    def env(app: str, **more: str) -> dict[str, str]:
        out = plain_env(app, **more)
        out["CHANNELS_PREFIX"] = f"msgab{side}.{os.getpid()}"
        out.update(extra)
        return out

    mc._env, servers.ROOT = env, Path(root).resolve()
    try:
        stack = mc._stack(side, {"CHANNEL_LAYER_BACKEND": "pubsub"})
        url, _asgi = stack.__enter__()
    finally:
        mc._env, servers.ROOT = plain_env, plain_root
    try:
        yield url
    finally:
        stack.__exit__(None, None, None)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    dirs = argv[:2]
    rounds = int(argv[2]) if len(argv) > 2 else 12
    messages = int(argv[3]) if len(argv) > 3 else 150
    seed = mc._prepare()
    pair = seed["pairs"][mc.SENDERS]  # the latency chat of bench.messaging_chat
    p50s: dict[str, list[float]] = {"A": [], "B": []}
    pooled: dict[str, list[float]] = {"A": [], "B": []}
    with _stack("A", dirs[0]) as url_a, _stack("B", dirs[1]) as url_b:
        urls = {"A": url_a, "B": url_b}
        for n in range(rounds):
            for side in "AB" if n % 2 == 0 else "BA":
                result = asyncio.run(mc._latency_pair(urls[side], pair, messages, f"{side}{n}"))
                if result["gaps"] or result["dups"]:
                    print(f"round {n} {side}: {result['gaps']} gaps, {result['dups']} duplicates")
                    return 1
                p50s[side].append(mc._pct(result["latencies"], 50))
                pooled[side] += result["latencies"]
            print(f"round {n}: A {p50s['A'][-1]:.2f} ms, B {p50s['B'][-1]:.2f} ms", flush=True)
    for side in "AB":
        print(
            f"{side} ({dirs['AB'.index(side)]}): median of round p50s {statistics.median(p50s[side]):.2f} ms; "
            f"pooled p50 {mc._pct(pooled[side], 50):.2f} ms, p99 {mc._pct(pooled[side], 99):.2f} ms"
        )
    faster = sum(b < a for a, b in zip(p50s["A"], p50s["B"], strict=True))
    diff = statistics.mean(b - a for a, b in zip(p50s["A"], p50s["B"], strict=True))
    print(f"B faster in {faster} of {rounds} rounds; mean difference B - A {diff:+.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
