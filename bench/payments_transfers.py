"""Scenario ``payments-transfers``: transfers/s and p99 through the service layer and the HTTP API,
each beside pgbench running the same SQL shape in the same run (issue #4, "Benchmarks").

``python -m bench payments-transfers [--rounds N] [--seconds S]`` (or ``python -m
bench.payments_transfers [rounds] [seconds]``). Its own database ``superapp_pay_bench2`` and Redis
db 15 (``bench.payments_common``). 16 clients everywhere, two data shapes, measured one after
the other:

a. **10,000 wallets**: each user friends with 10 others (a ring), transfers between random pairs
   of friends;
b. **10 hot wallets with 100,000 earlier transfers** in the tables (loaded after (a) was
   measured): transfers between random pairs of the 10.

Three targets per shape, interleaved over the rounds (A B C, B C A, C A B) so that a burst of
load from elsewhere on the machine hits each alike:

* **service layer**: ``payments.services.transfer_create`` (PIN, limits, auto-accept: one entry
  from wallet to wallet, the chat message, events; tasks queued after commit) called by 16
  client processes
  (``bench.payments_drive``);
* **HTTP API**: ``POST /api/v1/payments/transfers`` with a JWT, the PIN and a fresh
  ``Idempotency-Key``, from wrk (16 connections, a Lua script picks the pair) through nginx ->
  gunicorn (the production configs);
* **pgbench, same SQL shape**: lock the two wallets in id order, insert the transfer, its entry
  and two postings, update the two balances, commit (the deferred balance trigger runs), 16
  clients: what PostgreSQL alone does with one transfer on this machine (issue #4's anchor);
* **pgbench, the full transfer**: the same plus everything else the service reads and writes in
  PostgreSQL for one auto-accepted transfer (the payer's settings row, today's spending, the chat's
  row, the read mark, the message, two stream heads, six events), with no application CPU: the
  ceiling of any implementation in which a transfer is a chat message, as the issue asks.

After each shape the invariants are checked and printed.
"""

from __future__ import annotations

import json
import os
import time
import uuid

from . import load
from .env import RUN_DIR, load_average, psql
from .payments_common import (
    DB_NAME,
    PIN,
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

CLIENTS = 16
WALLETS, RING_K = 10_000, 5
HOT, HISTORY = 10, 100_000
GOALS = {"service": 0.6, "http": 0.3}

# One transfer as PostgreSQL alone would book it: :a, :b are 1-based indexes of two friends.
PGBENCH_TRANSFER = """\\set a random(1, {n})
{pair}
\\set amount random(1, 100)
BEGIN;
SELECT id, balance FROM payments_ledgeraccount WHERE id IN (:a + {wallet0}, :b + {wallet0}) ORDER BY id FOR UPDATE;
INSERT INTO payments_transfer (sender_id, receiver_id, amount, currency, note, status, created_at, expires_at, resolved_at) VALUES (:a + {user0}, :b + {user0}, :amount, 'CNY', 'pgbench', 'accepted', now(), now() + interval '24 hours', now()) RETURNING id AS transfer_id \\gset
INSERT INTO payments_journalentry (kind, reference, memo, created_at) VALUES ('adjustment', 'pgbench:transfer:' || :transfer_id, '', now()) RETURNING id AS entry_id \\gset
INSERT INTO payments_posting (entry_id, account_id, amount, currency) VALUES (:entry_id, :a + {wallet0}, -:amount, 'CNY'), (:entry_id, :b + {wallet0}, :amount, 'CNY');
UPDATE payments_ledgeraccount SET balance = balance - :amount WHERE id = :a + {wallet0};
UPDATE payments_ledgeraccount SET balance = balance + :amount WHERE id = :b + {wallet0};
COMMIT;
"""
# Everything the service writes and reads for one auto-accepted transfer, as PostgreSQL alone
# would do it (no application CPU at all): the payer's settings row locked (PIN, limits), today's
# spending summed, the same booking as above, then the chat's side: the direct chat's row locked
# and numbered, the payer's read mark, the transfer's message, both stream heads advanced (in user
# id order) and 3 events each (message.new, payments.transfer.created, .accepted), with payloads
# of the service's sizes. The ceiling of any implementation that shows transfers in the chat.
PGBENCH_TRANSFER_FULL = """\\set a random(1, {n})
{pair}
\\set amount random(1, 100)
\\set ua :a + {user0}
\\set ub :b + {user0}
BEGIN;
SELECT pin_hash, verification_level FROM payments_walletsettings WHERE user_id = :ua FOR UPDATE;
SELECT (SELECT coalesce(sum(amount), 0) FROM payments_transfer WHERE sender_id = :ua AND currency = 'CNY' AND created_at >= current_date AND status <> 'refunded') + (SELECT coalesce(sum(total_amount), 0) FROM payments_redpacket WHERE sender_id = :ua AND currency = 'CNY' AND created_at >= current_date) + (SELECT coalesce(sum(amount), 0) FROM payments_withdrawal WHERE user_id = :ua AND currency = 'CNY' AND created_at >= current_date AND status <> 'failed') + (SELECT coalesce(sum(amount - refunded_amount), 0) FROM payments_merchantorder WHERE payer_id = :ua AND currency = 'CNY' AND paid_at >= current_date) AS spent \\gset
SELECT id, balance FROM payments_ledgeraccount WHERE id IN (:a + {wallet0}, :b + {wallet0}) ORDER BY id FOR UPDATE;
INSERT INTO payments_transfer (sender_id, receiver_id, amount, currency, note, status, created_at, expires_at, resolved_at) VALUES (:ua, :ub, :amount, 'CNY', 'pgbench-full', 'accepted', now(), now() + interval '24 hours', now()) RETURNING id AS transfer_id \\gset
INSERT INTO payments_journalentry (kind, reference, memo, created_at) VALUES ('adjustment', 'pgbench:transfer:' || :transfer_id, '', now()) RETURNING id AS entry_id \\gset
INSERT INTO payments_posting (entry_id, account_id, amount, currency) VALUES (:entry_id, :a + {wallet0}, -:amount, 'CNY'), (:entry_id, :b + {wallet0}, :amount, 'CNY');
UPDATE payments_ledgeraccount SET balance = balance - :amount WHERE id = :a + {wallet0};
UPDATE payments_ledgeraccount SET balance = balance + :amount WHERE id = :b + {wallet0};
SELECT id AS conv FROM messaging_conversation WHERE kind = 'direct' AND user_low_id = least(:ua, :ub) AND user_high_id = greatest(:ua, :ub) \\gset
UPDATE messaging_conversation SET last_seq = last_seq + 1, last_message_at = now() WHERE id = :conv RETURNING last_seq AS seq \\gset
UPDATE messaging_member SET last_read_seq = :seq WHERE conversation_id = :conv AND user_id = :ua;
INSERT INTO messaging_message (conversation_id, seq, sender_id, client_msg_id, kind, text, content, mentions, mention_all, forwarded, created_at) VALUES (:conv, :seq, :ua, 'transfer/' || :transfer_id, 'transfer', '', jsonb_build_object('transfer_id', :transfer_id, 'receiver_id', :ub, 'amount', :amount, 'currency', 'CNY', 'note', '', 'status', 'accepted'), '[]', false, false, now()) RETURNING id AS message_id \\gset
SELECT user_id FROM core_userstream WHERE user_id IN (:ua, :ub) ORDER BY user_id FOR UPDATE;
UPDATE core_userstream SET last_seq = last_seq + 3 WHERE user_id = :ua RETURNING last_seq AS ha \\gset
UPDATE core_userstream SET last_seq = last_seq + 3 WHERE user_id = :ub RETURNING last_seq AS hb \\gset
INSERT INTO core_event (user_id, seq, type, data, created_at) SELECT u, h + k, t, jsonb_build_object('pad', repeat('x', len), 'transfer_id', :transfer_id, 'message_id', :message_id), now() FROM (VALUES (:ua, :ha - 3), (:ub, :hb - 3)) AS s(u, h), (VALUES (1, 'message.new', 400), (2, 'payments.transfer.created', 200), (3, 'payments.transfer.accepted', 230)) AS e(k, t, len);
COMMIT;
"""
# The same full transfer as one PL/pgSQL call (plans cached by PL/pgSQL, one round trip and one
# implicit transaction): what moving the whole transfer into a stored procedure could reach at
# best, still with no application CPU. Created in the bench database only (not in migrations).
FULL_FUNCTION = """
CREATE OR REPLACE FUNCTION bench_full_transfer(ua bigint, ub bigint, wa bigint, wb bigint, amt bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    spent bigint; tid bigint; eid bigint; conv bigint; s bigint; mid bigint; ha bigint; hb bigint;
BEGIN
    PERFORM 1 FROM payments_walletsettings WHERE user_id = ua FOR UPDATE;
    SELECT (SELECT coalesce(sum(amount), 0) FROM payments_transfer WHERE sender_id = ua AND currency = 'CNY'
              AND created_at >= current_date AND status <> 'refunded')
         + (SELECT coalesce(sum(total_amount), 0) FROM payments_redpacket WHERE sender_id = ua AND currency = 'CNY'
              AND created_at >= current_date)
         + (SELECT coalesce(sum(amount), 0) FROM payments_withdrawal WHERE user_id = ua AND currency = 'CNY'
              AND created_at >= current_date AND status <> 'failed')
         + (SELECT coalesce(sum(amount - refunded_amount), 0) FROM payments_merchantorder WHERE payer_id = ua
              AND currency = 'CNY' AND paid_at >= current_date)
      INTO spent;
    PERFORM 1 FROM payments_ledgeraccount WHERE id IN (wa, wb) ORDER BY id FOR UPDATE;
    INSERT INTO payments_transfer (sender_id, receiver_id, amount, currency, note, status, created_at, expires_at,
                                   resolved_at)
    VALUES (ua, ub, amt, 'CNY', 'pgbench-full', 'accepted', now(), now() + interval '24 hours', now())
    RETURNING id INTO tid;
    INSERT INTO payments_journalentry (kind, reference, memo, created_at)
    VALUES ('adjustment', 'pgbench:transfer:' || tid, '', now()) RETURNING id INTO eid;
    INSERT INTO payments_posting (entry_id, account_id, amount, currency)
    VALUES (eid, wa, -amt, 'CNY'), (eid, wb, amt, 'CNY');
    UPDATE payments_ledgeraccount SET balance = balance - amt WHERE id = wa;
    UPDATE payments_ledgeraccount SET balance = balance + amt WHERE id = wb;
    SELECT id INTO conv FROM messaging_conversation
     WHERE kind = 'direct' AND user_low_id = least(ua, ub) AND user_high_id = greatest(ua, ub);
    UPDATE messaging_conversation SET last_seq = last_seq + 1, last_message_at = now() WHERE id = conv
    RETURNING last_seq INTO s;
    UPDATE messaging_member SET last_read_seq = s WHERE conversation_id = conv AND user_id = ua;
    INSERT INTO messaging_message (conversation_id, seq, sender_id, client_msg_id, kind, text, content, mentions,
                                   mention_all, forwarded, created_at)
    VALUES (conv, s, ua, 'transfer/' || tid, 'transfer', '',
            jsonb_build_object('transfer_id', tid, 'receiver_id', ub, 'amount', amt, 'currency', 'CNY',
                               'note', '', 'status', 'accepted'), '[]', false, false, now())
    RETURNING id INTO mid;
    PERFORM 1 FROM core_userstream WHERE user_id IN (ua, ub) ORDER BY user_id FOR UPDATE;
    UPDATE core_userstream SET last_seq = last_seq + 3 WHERE user_id = ua RETURNING last_seq INTO ha;
    UPDATE core_userstream SET last_seq = last_seq + 3 WHERE user_id = ub RETURNING last_seq INTO hb;
    INSERT INTO core_event (user_id, seq, type, data, created_at)
    SELECT u, h + k, t, jsonb_build_object('pad', repeat('x', len), 'transfer_id', tid, 'message_id', mid), now()
      FROM (VALUES (ua, ha - 3), (ub, hb - 3)) AS x(u, h),
           (VALUES (1, 'message.new', 400), (2, 'payments.transfer.created', 200),
                   (3, 'payments.transfer.accepted', 230)) AS e(k, t, len);
    RETURN tid;
END $$;
"""
PGBENCH_TRANSFER_FUNCTION = """\\set a random(1, {n})
{pair}
\\set amount random(1, 100)
SELECT bench_full_transfer(:a + {user0}, :b + {user0}, :a + {wallet0}, :b + {wallet0}, :amount);
"""
# b: a friend of a. On the ring, a±d (1 <= d <= k); among hot wallets, any other one.
RING_PAIR = """\\set d random(1, {k2})
\\set b 1 + ((:a - 1 + {n} + (CASE WHEN :d <= {k} THEN :d ELSE {k} - :d END)) % {n})"""
ANY_PAIR = """\\set d random(1, {n1})
\\set b 1 + ((:a - 1 + :d) % {n})"""

WRK_LUA = """
local tokens = {tokens}
local n, k, user0, ring, pin = {n}, {k}, {user0}, {ring}, "{pin}"
local run = "{run}"
local counter = 0
statuses = {{}}
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed({seed})
end

function request()
  counter = counter + 1
  local i = math.random(0, n - 1)
  local j
  if ring then
    local d = math.random(1, k)
    if math.random(0, 1) == 0 then d = -d end
    j = (i + d) % n
  else
    j = (i + math.random(1, n - 1)) % n
  end
  local body = '{{"receiver_id":' .. (user0 + 1 + j) .. ',"amount":' .. math.random(1, 100) ..
               ',"pin":"' .. pin .. '"}}'
  return wrk.format("POST", "/api/v1/payments/transfers", {{
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[i + 1],
    ["Idempotency-Key"] = run .. "-" .. counter,
  }}, body)
end

function response(status, headers, body)
  if status ~= 201 then
    local key = status .. " " .. (string.match(body, '"code": *"([^"]*)"') or "")
    statuses[key] = (statuses[key] or 0) + 1
  end
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get("statuses")) do
      io.write("STATUS " .. key .. " " .. count .. "\\n")
    end
  end
end
"""


def run(*, rounds: int = 3, seconds: float = 10.0) -> str:
    started = time.monotonic()
    print("payments-transfers: preparing superapp_pay_bench2", flush=True)
    prepare_database()
    web = Web()
    sections = []
    try:
        for shape in ("wallets", "hot"):
            tokens = str(RUN_DIR / f"pay-tokens-{shape}.json")
            print(f"payments-transfers: loading the {shape} shape", flush=True)
            if shape == "wallets":
                info = child("bench.payments_seed", "wallets", str(WALLETS), str(RING_K), tokens)
                spec = {"shape": "ring", "n": WALLETS, "k": RING_K}
            else:
                info = child("bench.payments_seed", "hot", str(HOT), str(HISTORY), tokens)
                spec = {"shape": "any", "n": HOT, "k": 0}
            spec.update(user0=info["user0"], wallet0=info["wallet0"])
            print(f"  loaded in {info['seconds']:.0f}s", flush=True)
            sections.append(_measure(shape, spec, info, tokens, web, rounds=rounds, seconds=seconds))
    finally:
        web.stop()
    header = (
        f"### Payments: transfers (`bench/payments_transfers.py`)\n\n"
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, `python -m bench.payments_transfers {rounds} {seconds:g}` "
        f"(the same as `python -m bench payments-transfers --rounds {rounds} --seconds {seconds:g}`, without "
        f"the shared bench database's preparation); {CLIENTS} clients everywhere; {seconds:g}s per measurement, "
        f"median of {rounds} interleaved rounds (each shape's targets in rotated order); "
        f"the whole scenario took {time.monotonic() - started:.0f}s."
    )
    return "\n\n".join([header, *sections])


def _measure(
    shape: str, spec: dict, info: dict, tokens: str, web: Web, *, rounds: int, seconds: float
) -> str:
    ring = spec["shape"] == "ring"
    pair = (
        RING_PAIR.format(k=spec["k"], k2=2 * spec["k"], n=spec["n"])
        if ring
        else ANY_PAIR.format(n=spec["n"], n1=spec["n"] - 1)
    )
    script = PGBENCH_TRANSFER.format(n=spec["n"], pair=pair, wallet0=spec["wallet0"], user0=spec["user0"])
    full = PGBENCH_TRANSFER_FULL.format(n=spec["n"], pair=pair, wallet0=spec["wallet0"], user0=spec["user0"])
    function = PGBENCH_TRANSFER_FUNCTION.format(
        n=spec["n"], pair=pair, wallet0=spec["wallet0"], user0=spec["user0"]
    )
    psql(FULL_FUNCTION, DB_NAME)
    drive = {**spec, "clients": CLIENTS, "seconds": seconds, "pin": PIN}
    results: dict[str, list[Run]] = {
        "service": [], "http": [], "pgbench": [], "pgbench_full": [], "pgbench_function": []
    }  # fmt: skip

    def service() -> Run:
        out = child("bench.payments_drive", "transfers", json.dumps(drive), app_name="b_pay_drive")
        return Run(done=out["done"], seconds=out["seconds"], latencies_ms=out["latencies"], errors=out["errors"],
                   load=load_average(), extra={"client_cpu_ms": out["cpu_ms_per_call"]})  # fmt: skip

    def http() -> Run:
        return _wrk(web, tokens, spec, seconds)

    def anchor() -> Run:
        return pgbench(script, clients=CLIENTS, seconds=seconds)

    def ceiling() -> Run:
        return pgbench(full, clients=CLIENTS, seconds=seconds)

    def procedure() -> Run:
        return pgbench(function, clients=CLIENTS, seconds=seconds)

    _wrk(web, tokens, spec, 2.0)  # warm-up: the workers' connections, imports, caches
    targets = [("service", service), ("pgbench", anchor), ("http", http), ("pgbench_full", ceiling),
               ("pgbench_function", procedure)]  # fmt: skip
    for round_no in range(rounds):
        shift = round_no % len(targets)
        for key, measure in targets[shift:] + targets[:shift]:
            result = measure()
            results[key].append(result)
            print(f"  {shape} round {round_no + 1}: {key} {result.per_second:,.0f}/s p99 {result.p99:.0f} ms "
                  f"errors {result.errors} load {result.load}", flush=True)  # fmt: skip
    check = invariants(user_money=info["user_money"], escrows_empty=True)
    return _section(shape, info, results, check, web.label, rounds)


def _wrk(web: Web, tokens_path: str, spec: dict, seconds: float) -> Run:
    with open(tokens_path) as f:
        tokens = [t for _, t in json.load(f)]
    lua = WRK_LUA.format(
        tokens="{" + ",".join(f'"{t}"' for t in tokens) + "}",
        n=spec["n"],
        k=spec["k"],
        user0=spec["user0"],
        ring="true" if spec["shape"] == "ring" else "false",
        pin=PIN,
        run=uuid.uuid4().hex[:12],
        seed=int.from_bytes(os.urandom(4), "big"),
    )
    path = RUN_DIR / "pay-transfers.lua"
    path.write_text(lua)
    before = web.cpu_seconds()
    import subprocess

    argv = ["wrk", "--latency", "-t", "1", "-c", str(CLIENTS), "-d", f"{seconds:g}s", "--timeout", "10s",
            "-s", str(path), web.url + "/api/v1/payments/transfers"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if "Requests/sec" not in out.stdout:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    result = load.parse(out.stdout)
    cpu = web.cpu_seconds() - before
    errors = {}
    for line in out.stdout.splitlines():
        if line.startswith("STATUS "):
            *key, count = line[len("STATUS ") :].rsplit(" ", 1)
            errors[key[0]] = int(count)
    # wrk counts requests still in flight at the end as done; its percentiles are over all.
    run = Run(done=result.requests - sum(errors.values()), seconds=seconds, errors=errors, load=load_average(),
              extra={"p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
                     "server_cpu_ms": cpu * 1000 / max(result.requests, 1)})  # fmt: skip
    return run


def _section(
    shape: str, info: dict, results: dict[str, list[Run]], check: dict, web_label: str, rounds: int
) -> str:
    def per_s(key: str) -> float:
        return median([r.per_second for r in results[key]])

    def ratio(key: str, anchor: str = "pgbench") -> float:
        return median(
            [s.per_second / a.per_second for s, a in zip(results[key], results[anchor], strict=True)]
        )

    def p99(key: str) -> float:
        return median([r.p99 for r in results[key]])

    def errors(key: str) -> str:
        total: dict[str, int] = {}
        for r in results[key]:
            for code, n in r.errors.items():
                total[code] = total.get(code, 0) + n
        return ", ".join(f"{code}: {n}" for code, n in total.items()) or "0"

    loads = "; ".join(f"{key} " + ", ".join(r.load.split()[0] for r in runs) for key, runs in results.items())
    title = {
        "wallets": f"{WALLETS:,} wallets, transfers between random pairs of friends ({2 * RING_K} friends each)",
        "hot": f"{HOT} hot wallets, {info.get('transfers', HISTORY):,} earlier transfers in the tables, "
        f"transfers between random pairs of them",
    }[shape]
    client_cpu = median([r.extra["client_cpu_ms"] for r in results["service"]])
    server_cpu = median([r.extra["server_cpu_ms"] for r in results["http"]])
    rows = [
        f"#### ({'a' if shape == 'wallets' else 'b'}) {title}",
        "",
        "| target | transfers/s | p99 ms | vs pgbench (same run) | vs pgbench, the full transfer | goal | errors |",
        "|---|---:|---:|---:|---:|---|---|",
        f"| pgbench, same SQL shape (lock 2 wallets in id order, transfer, entry, 2 postings, 2 updates) "
        f"| {per_s('pgbench'):,.0f} | {p99('pgbench'):.1f} | 1.00 | | | {errors('pgbench')} |",
        f"| pgbench, the full transfer: the same + the payer's settings locked, today's spending, the "
        f"chat's row numbered, the read mark, the message, 2 stream heads, 6 events (the ceiling of "
        f"any implementation that shows transfers in the chat) | {per_s('pgbench_full'):,.0f} "
        f"| {p99('pgbench_full'):.1f} | {ratio('pgbench_full'):.2f}x | 1.00 | | {errors('pgbench_full')} |",
        f"| pgbench, the full transfer as one PL/pgSQL call (a stored procedure's best case, no "
        f"application) | {per_s('pgbench_function'):,.0f} | {p99('pgbench_function'):.1f} "
        f"| {ratio('pgbench_function'):.2f}x | {ratio('pgbench_function', 'pgbench_full'):.2f}x | "
        f"| {errors('pgbench_function')} |",
    ]
    for key, label in (
        ("service", f"service layer: `transfer_create`, {CLIENTS} processes (Python CPU {client_cpu:.1f} ms/transfer)"),
        ("http", f"HTTP API: `POST /api/v1/payments/transfers`, JWT + PIN + Idempotency-Key, {web_label} "
                 f"(server CPU {server_cpu:.1f} ms/transfer)"),
    ):  # fmt: skip
        goal = GOALS[key]
        met = "met" if ratio(key) >= goal else f"**NOT met** ({ratio(key) / goal:.2f} of the goal)"
        rows.append(
            f"| {label} | {per_s(key):,.0f} | {p99(key):.1f} | **{ratio(key):.2f}x** "
            f"| {ratio(key, 'pgbench_full'):.2f}x | >= {goal}x: {met} | {errors(key)} |"
        )
    raw = {key: [r.summary() for r in runs] for key, runs in results.items()}
    rows += [
        "",
        f"Invariants after the runs: {'**ok**' if invariants_ok(check) else '**FAILED**'}: {invariants_line(check)}.",
        f"Load average (1 min) after each measurement, by round: {loads}. Loaded in {info['seconds']:.0f}s.",
        "",
        f"<details><summary>raw ({rounds} rounds)</summary>\n\n```json\n{json.dumps(raw)}\n```\n</details>",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    import shutil
    import sys

    print(
        run(
            rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 3,
            seconds=float(sys.argv[2]) if len(sys.argv) > 2 else 10.0,
        )
    )
    shutil.rmtree(RUN_DIR, ignore_errors=True)  # logs and tokens; kept when a run fails
