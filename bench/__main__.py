"""``python -m bench <scenario> [--rounds N] [--seconds S]``; ``python -m bench all`` runs every one.

Prints the machine, the date and the command, then each scenario's table (Markdown, ready for
BENCHMARKS.md). Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379; installs wrk and
nginx from Debian when missing; uses only the database ``superapp_bench`` and Redis db 3.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time

from . import breakdown, env, me, topology
from .servers import check_uvicorn_flags

SCENARIOS = {"me": me.run, "topology": topology.run, "breakdown": breakdown.run}
SCENARIOS["moments"] = __import__("bench.moments_feed", fromlist=["run"]).run  # bench/moments_feed.py
SCENARIOS["messaging"] = __import__("bench.messaging_chat", fromlist=["run"]).run  # bench/messaging_chat.py
SCENARIOS["payments"] = __import__("bench.payments_ledger", fromlist=["run"]).run  # bench/payments_ledger.py
SCENARIOS["payments_orders"] = __import__("bench.payments_orders", fromlist=["run"]).run  # Payments II
SCENARIOS["payments-transfers"] = __import__("bench.payments_transfers", fromlist=["run"]).run
SCENARIOS["payments-grabs"] = __import__("bench.payments_grabs", fromlist=["run"]).run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per target (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement (default 3)")
    args = parser.parse_args(argv)

    env.ensure_tools()
    check_uvicorn_flags()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"Machine: {env.machine()}")
    print(f"Command: python -m bench {' '.join(shlex.quote(a) for a in (argv or sys.argv[1:]))}")
    print(
        f"Load: wrk {_wrk_version()}, 1 thread, 8 connections, {args.seconds:g}s per measurement, "
        f"median of {args.rounds} interleaved rounds; load average before: {env.load_average()}"
    )
    print(f"Run directory (server logs): {env.RUN_DIR}")
    print("Preparing the database superapp_bench ...", flush=True)
    env.prepare_database()
    outputs = []
    for name in names:
        started = time.monotonic()
        outputs.append(SCENARIOS[name](rounds=args.rounds, seconds=args.seconds))
        print(f"  {name} took {time.monotonic() - started:.0f}s", flush=True)
    print(f"Load average after: {env.load_average()}\n")
    print("\n\n".join(outputs))
    shutil.rmtree(env.RUN_DIR, ignore_errors=True)
    return 0


def _wrk_version() -> str:
    import subprocess

    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return (out.stdout + out.stderr).split()[1] if (out.stdout + out.stderr).split() else "?"


if __name__ == "__main__":
    sys.exit(main())
