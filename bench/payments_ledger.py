"""Payments: ledger transfers/s and red-packet grabs/s on PostgreSQL, against pgbench.

``python -m bench payments`` (or ``python -m bench.payments_ledger``). Uses its own database
``superapp_pay_bench`` (dropped and migrated each run). Three figures, each with its anchor:

* **ledger_post**: wallet-to-wallet entries through ``payments.ledger`` (``money_atomic`` +
  ``ledger_post``: lock two accounts in id order, one entry, two postings, two balance updates,
  the deferred balance trigger at commit) among a few hot wallets, N threads;
* **pgbench, same SQL**: the same statements as a pgbench script on the same tables and the same
  hot accounts, N clients: what PostgreSQL alone does with that shape;
* **transfer_create**: the whole service (PIN check, limits, escrow, auto-accept, the chat
  message, events);
* **red-packet grabs**: ``red_packet_grab`` with many grabbers on 1-share... N-share packets.

The Django side runs in a child process (threads; psycopg releases the GIL while waiting).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DB_NAME = "superapp_pay_bench"
REDIS_URL = "redis://127.0.0.1:6379/7"
HOT_WALLETS = 4
THREADS = 8

PGBENCH_SCRIPT = """\\set a random(1, {n})
\\set d random(1, {m})
\\set b 1 + ((:a - 1 + :d) % {n})
\\set amount random(1, 100)
BEGIN;
SELECT id, balance FROM payments_ledgeraccount WHERE id IN (:a + {offset}, :b + {offset}) ORDER BY id FOR UPDATE;
INSERT INTO payments_journalentry (kind, reference, memo, created_at) VALUES ('adjustment', 'pgb:' || :client_id || ':' || random(), '', now()) RETURNING id \\gset e_
INSERT INTO payments_posting (entry_id, account_id, amount, currency) VALUES (:e_id, :a + {offset}, -:amount, 'CNY'), (:e_id, :b + {offset}, :amount, 'CNY');
UPDATE payments_ledgeraccount SET balance = balance - :amount WHERE id = :a + {offset};
UPDATE payments_ledgeraccount SET balance = balance + :amount WHERE id = :b + {offset};
COMMIT;
"""


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        DATABASE_URL=f"{PG}/{DB_NAME}?application_name=superapp_pay_bench",
        REDIS_URL=REDIS_URL,
        DJANGO_SETTINGS_MODULE="superapp.settings",
        SECRET_KEY="bench-secret-key-" + "x" * 40,
        CELERY_TASK_ALWAYS_EAGER="true",
        LOG_LEVEL="WARNING",
        SECURE_SSL_REDIRECT="false",
    )
    return env


def _psql(sql: str, db: str = "postgres") -> str:
    out = subprocess.run(
        ["psql", f"{PG}/{db}", "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def _prepare() -> None:
    _psql(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    _psql(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=_env(),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _child(mode: str, seconds: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.payments_ledger", "--child", mode, str(seconds)],
        cwd=ROOT,
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pgbench(seconds: float, offset: int, n: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(PGBENCH_SCRIPT.format(n=n, m=n - 1, offset=offset))
        script = f.name
    out = subprocess.run(
        [
            "pgbench",
            "-n",
            "-c",
            str(THREADS),
            "-j",
            "2",
            "-T",
            str(max(1, round(seconds))),
            "-f",
            script,
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            DB_NAME,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    os.unlink(script)
    for line in out.stdout.splitlines():
        if line.startswith("tps ="):
            return float(line.split()[2])
    raise RuntimeError(out.stdout + out.stderr)


def run(*, rounds: int = 3, seconds: float = 5.0) -> str:
    _prepare()
    setup = _child("setup", 0)
    results: dict[str, list[float]] = {"ledger": [], "pgbench": [], "transfer": [], "grab": []}
    for _ in range(rounds):  # interleaved, so drift hits every target alike
        results["ledger"].append(_child("ledger", seconds)["per_second"])
        results["pgbench"].append(_pgbench(seconds, setup["offset"], HOT_WALLETS))
        results["transfer"].append(_child("transfer", seconds)["per_second"])
        results["grab"].append(_child("grab", seconds)["per_second"])
    check = _child("reconcile", 0)

    def med(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    ledger, anchor = med(results["ledger"]), med(results["pgbench"])
    lines = [
        "### Payments: ledger and red packets (`bench/payments_ledger.py`)",
        "",
        f"{THREADS} threads / pgbench clients, {HOT_WALLETS} hot wallets, {seconds:g}s per measurement, "
        f"median of {rounds} interleaved rounds; reconciliation after the run: {'ok' if check['ok'] else 'MISMATCH'}.",
        "",
        "| target | per second | vs pgbench (same SQL) |",
        "|---|---:|---:|",
        f"| pgbench: lock 2 accounts, entry, 2 postings, 2 updates | {anchor:,.0f} | 1.00 |",
        f"| `ledger_post` via `money_atomic` (same shape, Django) | {ledger:,.0f} | {ledger / anchor:.2f} |",
        f"| `transfer_create` (auto-accept: PIN, limits, escrow, 2 entries, chat message, events) | {med(results['transfer']):,.0f} "
        f"| {med(results['transfer']) / anchor:.2f} |",
        f"| `red_packet_grab` ({THREADS} threads, 20-share packets) | {med(results['grab']):,.0f} "
        f"| {med(results['grab']) / anchor:.2f} |",
        "",
        f"Raw: {json.dumps(results)}",
    ]
    return "\n".join(lines)


# --- the child process (Django) ----------------------------------------------------------------


def _threads(seconds: float, work) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * THREADS
    errors: list[BaseException] = []

    def loop(index: int) -> None:
        from django.db import close_old_connections

        try:
            while time.monotonic() < stop:
                counts[index] += work(index)
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts) / (time.monotonic() - started)


def child(mode: str, seconds: float) -> dict:
    import random

    import django

    django.setup()
    from accounts.models import Friendship, User
    from payments import red_packets, services
    from payments.ledger import Leg, ledger_post, ledger_reconcile, money_atomic, wallet_for
    from payments.models import AccountKind, LedgerAccount, RedPacket, TopUp

    def users(prefix: str, n: int) -> list:
        return list(User.objects.filter(handle__startswith=prefix).order_by("id")[:n])

    if mode == "setup":
        hot = [
            User.objects.create_user(
                f"hot{i}", "pw-bench", email=f"hot{i}@b.test", display_name="h", is_verified=True
            )
            for i in range(HOT_WALLETS)
        ]
        grabbers = [
            User.objects.create_user(
                f"grab{i}", "pw-bench", email=f"grab{i}@b.test", display_name="g", is_verified=True
            )
            for i in range(40)
        ]
        Friendship.objects.bulk_create(
            [
                Friendship(user=a, friend=b)
                for a in hot + grabbers
                for b in hot + grabbers
                if a != b and (a in hot or b in hot)
            ]
        )
        wallets = [wallet_for(user_id=u.pk) for u in hot]
        for user in hot:
            top_up = TopUp.objects.create(user=user, amount=10**12, currency="CNY", provider="sandbox")
            services.top_up_settle(top_up_id=top_up.pk)
            services.pin_set(user_id=user.pk, pin="123456")
            services.wallet_settings_update(user_id=user.pk, auto_accept_transfers=True)
        from payments.models import WalletSettings

        WalletSettings.objects.filter(user__in=hot).update(verification_level="verified")
        ids = sorted(w.id for w in wallets)
        assert ids == list(range(ids[0], ids[0] + HOT_WALLETS)), ids  # pgbench addresses them by offset
        return {"offset": ids[0] - 1}

    if mode == "ledger":
        wallets = [wallet_for(user_id=u.pk) for u in users("hot", HOT_WALLETS)]
        counter = iter(range(10**9))

        @money_atomic
        def move(src, dst, amount):
            ledger_post(
                kind="adjustment",
                reference=f"bench:{time.time_ns()}:{next(counter)}",
                legs=[Leg(src, -amount), Leg(dst, amount)],
            )

        def work(index: int) -> int:
            src, dst = random.sample(wallets, 2)
            move(src, dst, random.randint(1, 100))
            return 1

        return {"per_second": _threads(seconds, work)}

    if mode == "transfer":
        hot = users("hot", HOT_WALLETS)

        def work(index: int) -> int:
            src, dst = random.sample(hot, 2)
            services.transfer_create(
                sender_id=src.pk, receiver_id=dst.pk, amount=random.randint(1, 100), pin="123456"
            )
            return 1

        return {"per_second": _threads(seconds, work)}

    if mode == "grab":
        from messaging import services as chat_services

        sender = users("hot", 1)[0]
        grabbers = users("grab", 40)
        # Red packets live in a chat: a group of the sender and the grabbers (friends since setup).
        chat = chat_services.group_create(
            creator_id=sender.pk, name="bench", member_ids=[g.pk for g in grabbers]
        )
        packets = [
            red_packets.red_packet_send(
                sender_id=sender.pk,
                kind="lucky",
                total_amount=2_000,
                count=20,
                conversation_id=chat.pk,
                pin="123456",
            )
            for _ in range(int(seconds * 20) + 5)
        ]
        queue = [(p.pk, g.pk) for p in packets for g in grabbers]
        random.shuffle(queue)
        lock = threading.Lock()

        def work(index: int) -> int:
            with lock:
                if not queue:
                    time.sleep(0.01)
                    return 0
                packet_id, user_id = queue.pop()
            try:
                red_packets.red_packet_grab(user_id=user_id, packet_id=packet_id)
                return 1
            except Exception as exc:  # empty packets are part of the load
                if getattr(exc, "code", "") != "red_packet_empty":
                    raise
                return 0

        rate = _threads(seconds, work)
        assert all(p.remaining_amount >= 0 for p in RedPacket.objects.all())
        return {"per_second": rate}

    if mode == "reconcile":
        negative = LedgerAccount.objects.filter(kind=AccountKind.WALLET, balance__lt=0).exists()
        return {"ok": ledger_reconcile().ok and not negative}
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], float(sys.argv[3]))))
    else:
        rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
        seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
        print(run(rounds=rounds, seconds=seconds))
