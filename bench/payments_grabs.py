"""Scenario ``payments-grabs``: red-packet grabs/s, one 1,000-share packet grabbed by 2,000
distinct users over 64 connections, beside pgbench grabbing the same way (issue #4, "Benchmarks").

``python -m bench payments-grabs [--rounds N]`` (or ``python -m bench.payments_grabs [rounds]``).
Its own database ``superapp_pay_bench2`` and Redis db 15 (``bench.payments_common``).

The shape: a sender and 2,000 grabbers in one group (a red packet lives in a chat and only its
members grab it, so the group has 2,001 members and the packet 1,000 shares: both over the
product's limits, raised for this benchmark only in ``bench.payments_settings``). Each round, for
each target, the sender sends a fresh lucky packet of 1,000 shares (100 CNY) through the service,
then 2,000 distinct users grab it, 64 at a time, each user once; exactly 1,000 must succeed and
1,000 be told ``red_packet_empty``. The figure is attempts answered per second (2,000 / the time
from the first attempt to the last answer). Targets, in rotated order each round:

* **service layer**: ``red_packets.red_packet_grab`` from 64 client processes
  (``bench.payments_drive``);
* **HTTP API**: ``POST /api/v1/payments/red-packets/<id>/grab`` with a JWT and an
  ``Idempotency-Key``, 64 keep-alive connections (an asyncio client in this process) through
  nginx -> gunicorn (the production configs);
* **pgbench, same SQL shape** (issue #4's anchor, the goal's reference): lock the packet row,
  draw the share (the same lucky rule), decrement the packet, insert the grab, its entry and two
  postings, debit the escrow, credit the wallet; 64 clients, each user once (a sequence hands
  them out). The service split the packet when it was sent; this script draws its own shares,
  so the packet's share rows are deleted before it runs (not timed).
* **pgbench, pre-split shape** (for reference, not the goal's anchor): the service's own SQL
  since packets are split when sent: claim the lowest unclaimed share ``FOR UPDATE SKIP LOCKED``
  and insert the grab (one statement), insert the entry and two postings, then the hot rows
  last: decrement the packet, debit the escrow, credit the wallet. What the same statements
  cost PostgreSQL without Python around them.

After the rounds the invariants are checked: reconciliation, no negative balance, money on the
users' side unchanged, and every packet exactly 1,000 grabs by 1,000 users summing to its amount.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from .env import RUN_DIR, load_average, psql
from .payments_common import (
    DB_NAME,
    Run,
    Web,
    child,
    invariants,
    invariants_line,
    invariants_ok,
    median,
    pgbench,
    prepare_database,
)

CONNECTIONS = 64
GRABBERS, SHARES, AMOUNT = 2_000, 1_000, 10_000
GOAL = 0.5

PGBENCH_GRAB = """SELECT nextval('bench_grab_seq') AS g \\gset
\\if :g <= {n}
\\set u :g + {user0}
\\set w :g + {wallet0}
BEGIN;
SELECT remaining_amount AS ra, remaining_count AS rc FROM payments_redpacket WHERE id = {packet} FOR UPDATE \\gset
\\if :rc > 0
\\set upper greatest(1, least(2 * :ra / :rc, :ra - (:rc - 1)))
\\set share CASE WHEN :rc = 1 THEN :ra ELSE random(1, :upper) END
UPDATE payments_redpacket SET remaining_amount = remaining_amount - :share, remaining_count = remaining_count - 1, status = CASE WHEN remaining_count = 1 THEN 'finished' ELSE status END, resolved_at = CASE WHEN remaining_count = 1 THEN now() ELSE resolved_at END WHERE id = {packet};
INSERT INTO payments_redpacketgrab (packet_id, user_id, amount, created_at) VALUES ({packet}, :u, :share, clock_timestamp());
INSERT INTO payments_journalentry (kind, reference, memo, created_at) VALUES ('red_packet_grab', 'red_packet:{packet}:grab:' || :u, '', now()) RETURNING id AS entry_id \\gset
INSERT INTO payments_posting (entry_id, account_id, amount, currency) VALUES (:entry_id, {escrow}, -:share, 'CNY'), (:entry_id, :w, :share, 'CNY');
UPDATE payments_ledgeraccount SET balance = balance - :share WHERE id = {escrow};
UPDATE payments_ledgeraccount SET balance = balance + :share WHERE id = :w;
\\endif
COMMIT;
\\endif
"""

PGBENCH_SPLIT_GRAB = """SELECT nextval('bench_grab_seq') AS g \\gset
\\if :g <= {n}
\\set u :g + {user0}
\\set w :g + {wallet0}
BEGIN;
WITH share AS (DELETE FROM payments_redpacketshare WHERE id = (SELECT id FROM payments_redpacketshare WHERE packet_id = {packet} ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING amount), grab AS (INSERT INTO payments_redpacketgrab (packet_id, user_id, amount, created_at) SELECT {packet}, :u, amount, clock_timestamp() FROM share RETURNING amount) SELECT coalesce((SELECT amount FROM grab), 0) AS share \\gset
\\if :share > 0
INSERT INTO payments_journalentry (kind, reference, memo, created_at) VALUES ('red_packet_grab', 'red_packet:{packet}:grab:' || :u, '', now()) RETURNING id AS entry_id \\gset
INSERT INTO payments_posting (entry_id, account_id, amount, currency) VALUES (:entry_id, {escrow}, -:share, 'CNY'), (:entry_id, :w, :share, 'CNY');
UPDATE payments_redpacket SET remaining_amount = remaining_amount - :share, remaining_count = remaining_count - 1, status = CASE WHEN remaining_count = 1 THEN 'finished' ELSE status END, resolved_at = CASE WHEN remaining_count = 1 THEN now() ELSE resolved_at END WHERE id = {packet};
UPDATE payments_ledgeraccount SET balance = balance - :share WHERE id = {escrow};
UPDATE payments_ledgeraccount SET balance = balance + :share WHERE id = :w;
\\endif
COMMIT;
\\endif
"""


def run(*, rounds: int = 3, seconds: float = 0.0) -> str:
    """``seconds`` is not used: a run is one packet's 2,000 attempts, however long they take."""
    started = time.monotonic()
    print("payments-grabs: preparing superapp_pay_bench2", flush=True)
    prepare_database()
    tokens_path = str(RUN_DIR / "pay-tokens-grab.json")
    info = child("bench.payments_seed", "grab", str(GRABBERS), tokens_path)
    print(f"  loaded in {info['seconds']:.0f}s (group {info['conversation']})", flush=True)
    with open(tokens_path) as f:
        tokens = [t for _, t in json.load(f)]
    packets: dict[str, list[int]] = {}
    results: dict[str, list[Run]] = {"service": [], "pgbench": [], "pgbench_split": [], "http": []}
    web = Web()
    try:

        def send(count: int = SHARES, amount: int = AMOUNT) -> dict:
            sent = child("bench.payments_seed", "packet", str(info["sender"]), str(info["conversation"]),
                         str(count), str(amount))  # fmt: skip
            packets[str(sent["packet"])] = [count, amount]
            return sent

        warm = send(20, 200)  # warm the web workers: 40 attempts on a small packet
        asyncio.run(_http_grabs(web, warm["packet"], tokens[:40], 8))

        def service(packet: dict) -> Run:
            spec = {"clients": CONNECTIONS, "packet": packet["packet"], "user0": info["user0"], "n": GRABBERS}
            out = child("bench.payments_drive", "grabs", json.dumps(spec), app_name="b_pay_drive")
            return Run(done=out["done"], seconds=out["seconds"], latencies_ms=out["latencies"],
                       errors=out["outcomes"], load=load_average(),
                       extra={"client_cpu_ms": out["cpu_ms_per_call"]})  # fmt: skip

        def anchor(packet: dict, template: str = PGBENCH_GRAB) -> Run:
            psql("DROP SEQUENCE IF EXISTS bench_grab_seq; CREATE SEQUENCE bench_grab_seq", db=DB_NAME)
            if template is PGBENCH_GRAB:  # it draws its own shares: the service's split goes
                psql(f"DELETE FROM payments_redpacketshare WHERE packet_id = {packet['packet']}", db=DB_NAME)
            script = template.format(n=GRABBERS, user0=info["user0"], wallet0=info["wallet0"],
                                     packet=packet["packet"], escrow=packet["escrow"])  # fmt: skip
            per_client = -(-GRABBERS // CONNECTIONS)
            result = pgbench(script, clients=CONNECTIONS, transactions=per_client)
            # Every run of the script is a "transaction" to pgbench, the few past the last user too.
            result.done = GRABBERS
            grabs = psql(
                f"SELECT count(*) FROM payments_redpacketgrab WHERE packet_id = {packet['packet']}", DB_NAME
            )
            result.errors = {
                **result.errors,
                "grabbed": int(grabs),
                "red_packet_empty": GRABBERS - int(grabs),
            }
            return result

        def http(packet: dict) -> Run:
            before = web.cpu_seconds()
            result = asyncio.run(_http_grabs(web, packet["packet"], tokens, CONNECTIONS))
            result.extra["server_cpu_ms"] = (web.cpu_seconds() - before) * 1000 / GRABBERS
            return result

        def anchor_split(packet: dict) -> Run:
            return anchor(packet, PGBENCH_SPLIT_GRAB)

        targets = [("service", service), ("pgbench", anchor), ("http", http), ("pgbench_split", anchor_split)]
        for round_no in range(rounds):
            shift = round_no % len(targets)
            for key, measure in targets[shift:] + targets[:shift]:
                packet = send()
                result = measure(packet)
                result.extra["shares_per_second"] = _shares_per_second(packet["packet"])
                results[key].append(result)
                print(f"  round {round_no + 1}: {key} {result.per_second:,.0f} attempts/s p99 {result.p99:.0f} ms "
                      f"{result.errors} load {result.load}", flush=True)  # fmt: skip
    finally:
        web.stop()
    check = invariants(user_money=info["user_money"], packets=packets)
    return _section(results, check, web.label, rounds, time.monotonic() - started)


def _shares_per_second(packet_id: int) -> float:
    """Grabs per second while the shares lasted: from the first grab row to the 1,000th (their
    ``created_at``: the service's clock when it claims the share and inserts the row; the pgbench
    scripts' ``clock_timestamp()`` when they insert it)."""
    span = psql(
        f"SELECT extract(epoch FROM max(created_at) - min(created_at)), count(*) FROM payments_redpacketgrab "
        f"WHERE packet_id = {packet_id}",
        DB_NAME,
    )
    seconds, count = span.split("|")
    return (int(count) - 1) / float(seconds) if float(seconds) > 0 else 0.0


async def _http_grabs(web: Web, packet_id: int, tokens: list[str], connections: int) -> Run:
    """Each token grabs once; ``connections`` keep-alive connections take the next token."""
    host, port = web.url.removeprefix("http://").split(":")
    streams = [await asyncio.open_connection(host, int(port)) for _ in range(connections)]
    queue = list(reversed(tokens))
    outcomes: dict[str, int] = {}
    latencies: list[float] = []
    run_id = uuid.uuid4().hex[:12]
    path = f"/api/v1/payments/red-packets/{packet_id}/grab"

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while queue:
            token = queue.pop()
            request = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                f"Idempotency-Key: {run_id}-{len(queue)}\r\nContent-Type: application/json\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            began = time.monotonic()
            writer.write(request.encode())
            status, body = await _response(reader)
            latencies.append((time.monotonic() - began) * 1000)
            code = "grabbed" if status == 201 else f"{status} {_code(body)}"
            outcomes[code] = outcomes.get(code, 0) + 1
        writer.close()

    began = time.monotonic()
    await asyncio.gather(*(client(r, w) for r, w in streams))
    seconds = time.monotonic() - began
    return Run(
        done=len(latencies), seconds=seconds, latencies_ms=latencies, errors=outcomes, load=load_average()
    )


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    body = b""
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, body
        body += chunk[:-2]


def _code(body: bytes) -> str:
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return body[:80].decode("latin-1")


def _section(results: dict[str, list[Run]], check: dict, web_label: str, rounds: int, took: float) -> str:
    def per_s(key: str) -> float:
        return median([r.per_second for r in results[key]])

    def ratio(key: str) -> float:
        return median(
            [s.per_second / a.per_second for s, a in zip(results[key], results["pgbench"], strict=True)]
        )

    def p99(key: str) -> float:
        return median([r.p99 for r in results[key]])

    def shares(key: str) -> float:
        return median([r.extra["shares_per_second"] for r in results[key]])

    def shares_ratio(key: str, anchor: str = "pgbench") -> float:
        pairs = zip(results[key], results[anchor], strict=True)
        return median([s.extra["shares_per_second"] / a.extra["shares_per_second"] for s, a in pairs])

    def split_ratio(key: str) -> float:
        pairs = zip(results[key], results["pgbench_split"], strict=True)
        return median([s.per_second / a.per_second for s, a in pairs])

    def outcomes(key: str) -> str:
        rows = []
        for r in results[key]:
            rows.append(" + ".join(f"{n} {code}" for code, n in sorted(r.errors.items())))
        return "; ".join(rows)

    client_cpu = median([r.extra["client_cpu_ms"] for r in results["service"]])
    server_cpu = median([r.extra["server_cpu_ms"] for r in results["http"]])
    loads = "; ".join(f"{key} " + ", ".join(r.load.split()[0] for r in runs) for key, runs in results.items())
    lines = [
        "### Payments: red-packet grabs (`bench/payments_grabs.py`)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, `python -m bench.payments_grabs {rounds}` (or `python -m bench "
        f"payments-grabs --rounds {rounds}`): "
        f"one lucky packet of {SHARES:,} shares ({AMOUNT // 100} CNY) per target per round, {GRABBERS:,} "
        f"distinct users grabbing over {CONNECTIONS} connections; median of {rounds} rounds (targets in "
        f"rotated order); the scenario took {took:.0f}s. Group of {GRABBERS + 1:,} and {SHARES:,} shares: "
        "over the product limits (500 members, 100 shares), raised for this bench only "
        "(`bench/payments_settings.py`).",
        "",
        "| target | attempts answered/s | p99 ms | vs pgbench (same run) | grabs/s while the shares lasted "
        "| vs pgbench | goal (>= 0.5x) | vs pgbench pre-split (attempts, grabs) | outcomes per round |",
        "|---|---:|---:|---:|---:|---:|---|---|---|",
        f"| pgbench, same SQL shape (issue #4's anchor: lock the packet, draw, decrement, grab row, entry, "
        f"2 postings, 2 balance updates) | {per_s('pgbench'):,.0f} | {p99('pgbench'):.1f} | 1.00 "
        f"| {shares('pgbench'):,.0f} | 1.00 | | | {outcomes('pgbench')} |",
        f"| pgbench, pre-split shape (for reference: claim a share SKIP LOCKED + grab row, entry, 2 postings, "
        f"then decrement the packet, 2 balance updates) | {per_s('pgbench_split'):,.0f} | "
        f"{p99('pgbench_split'):.1f} | {ratio('pgbench_split'):.2f}x | {shares('pgbench_split'):,.0f} "
        f"| {shares_ratio('pgbench_split'):.2f}x | | 1.00 | {outcomes('pgbench_split')} |",
    ]
    for key, label in (
        ("service", f"service layer: `red_packet_grab`, {CONNECTIONS} processes (Python CPU {client_cpu:.1f} ms/attempt)"),
        ("http", f"HTTP API: `POST .../red-packets/<id>/grab`, JWT + Idempotency-Key, {web_label} "
                 f"(server CPU {server_cpu:.1f} ms/attempt)"),
    ):  # fmt: skip
        worst = min(ratio(key), shares_ratio(key))
        met = "met" if worst >= GOAL else f"**NOT met** ({worst / GOAL:.2f} of the goal)"
        lines.append(
            f"| {label} | {per_s(key):,.0f} | {p99(key):.1f} | **{ratio(key):.2f}x** | {shares(key):,.0f} "
            f"| **{shares_ratio(key):.2f}x** | {met} | {split_ratio(key):.2f}x, "
            f"{shares_ratio(key, 'pgbench_split'):.2f}x | {outcomes(key)} |"
        )
    raw = {key: [r.summary() for r in runs] for key, runs in results.items()}
    lines += [
        "",
        f"Invariants after the runs: {'**ok**' if invariants_ok(check) else '**FAILED**'}: {invariants_line(check)}.",
        f"Load average (1 min) after each measurement, by round: {loads}.",
        "",
        f"<details><summary>raw ({rounds} rounds)</summary>\n\n```json\n{json.dumps(raw)}\n```\n</details>",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    import shutil
    import sys

    print(run(rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 3))
    shutil.rmtree(RUN_DIR, ignore_errors=True)  # logs and tokens; kept when a run fails
