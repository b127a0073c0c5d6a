"""The data of the payments load benchmarks, loaded fast, and the checks run after each run.

``python -m bench.payments_seed <command> ...`` in a child process with the bench's Django
environment (``bench.payments_common.child``); prints one JSON line.

* ``wallets <n> <k> <tokens.json>``: n users on a ring, each the friend of the k before and the
  k after it (2k friends), a direct chat per pair of friends (as after their first message),
  funded wallets, PINs, real-name verified, auto-accepting transfers, a login session each.
* ``hot <n> <transfers> <tokens.json>``: n users, all friends, and ``transfers`` earlier
  auto-accepted transfers among them over the last 30 days, with everything a transfer leaves:
  the transfer, two journal entries and four postings, its message in the pair's chat, three
  events for each side.
* ``grab <n> <tokens.json>``: a sender and n grabbers, the sender's friends, in one group.
* ``packet <sender> <conversation> <count> <amount>``: a lucky red packet sent by the service.
* ``check <expectations json>``: the invariants (reconciliation, no negative balance, money on
  the users' side unchanged, plus the expectations given).

Users, accounts, chats and sessions are written with the ORM's ``bulk_create`` (the models'
defaults apply); the ledger history with set-based SQL; then ``ANALYZE``. Wallet ids (and user
ids) of one shape are contiguous, so that a pgbench script can address them by offset.
"""

from __future__ import annotations

import json
import os
import sys
import time

FUNDS = 100_000_000  # fen on each wallet (1,000,000 CNY): no transfer of the bench runs short
PIN = "123456"


def main(argv: list[str]) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.payments_settings")
    import django

    django.setup()
    command, args = argv[0], argv[1:]
    if command == "wallets":
        return wallets(int(args[0]), int(args[1]), args[2])
    if command == "hot":
        return hot(int(args[0]), int(args[1]), args[2])
    if command == "grab":
        return grab(int(args[0]), args[1])
    if command == "packet":
        return packet(*(int(a) for a in args))
    if command == "check":
        return check(json.loads(args[0]))
    raise SystemExit(f"unknown command {command}")


# --- building blocks --------------------------------------------------------------------------


def _users(prefix: str, n: int) -> list[int]:
    from django.contrib.auth.hashers import make_password

    from accounts.models import User

    password = make_password("superapp-demo")  # one hash for all: argon2 costs 0.2 s each
    rows = User.objects.bulk_create(
        [
            User(
                handle=f"{prefix}{i:05d}",
                email=f"{prefix}{i:05d}@bench.invalid",
                display_name=f"{prefix}{i}",
                password=password,
                is_verified=True,
            )
            for i in range(n)
        ],
        batch_size=5000,
    )
    ids = [u.pk for u in rows]
    _contiguous(ids, "users")
    return ids


def _contiguous(ids: list[int], what: str) -> None:
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise SystemExit(f"{what} ids are not contiguous; the pgbench scripts address them by offset")


def _friends(pairs: list[tuple[int, int]]) -> None:
    """Both rows of each friendship (accounts stores one per side) and the pair's direct chat."""
    from accounts.models import Friendship
    from messaging.models import Conversation, Member

    Friendship.objects.bulk_create(
        [Friendship(user_id=a, friend_id=b) for a, b in pairs]
        + [Friendship(user_id=b, friend_id=a) for a, b in pairs],
        batch_size=10000,
    )
    convs = Conversation.objects.bulk_create(
        [
            Conversation(
                kind=Conversation.Kind.DIRECT, user_low_id=min(a, b), user_high_id=max(a, b), member_count=2
            )
            for a, b in pairs
        ],
        batch_size=10000,
    )
    Member.objects.bulk_create(
        [Member(conversation=c, user_id=u) for c in convs for u in (c.user_low_id, c.user_high_id)],
        batch_size=10000,
    )


def _wallets(user_ids: list[int], *, funds: int, escrow: str | None) -> list[int]:
    """Wallets (contiguous ids), funded by one entry each from the provider clearing account;
    PINs, verified level, auto-accept; stream heads; escrow accounts when asked."""
    from django.db import connection, transaction

    from payments import pins
    from payments.ledger import account_for
    from payments.models import AccountKind, LedgerAccount, WalletSettings
    from superapp.core.models import UserStream

    with transaction.atomic():
        WalletSettings.objects.bulk_create(
            [
                WalletSettings(
                    user_id=u,
                    pin_hash=pins.pin_hash(PIN),
                    verification_level="verified",
                    auto_accept_transfers=True,
                )
                for u in user_ids
            ],
            batch_size=5000,
        )
        UserStream.objects.bulk_create(
            [UserStream(user_id=u) for u in user_ids], batch_size=5000, ignore_conflicts=True
        )
        wallets = LedgerAccount.objects.bulk_create(
            [LedgerAccount(kind=AccountKind.WALLET, owner_id=u, currency="CNY") for u in user_ids],
            batch_size=5000,
        )
        wallet_ids = [w.pk for w in wallets]
        _contiguous(wallet_ids, "wallet")
        if escrow:
            LedgerAccount.objects.bulk_create(
                [LedgerAccount(kind=escrow, owner_id=u, currency="CNY") for u in user_ids], batch_size=5000
            )
        clearing = account_for(kind=AccountKind.PROVIDER_CLEARING, currency="CNY")
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO payments_journalentry (kind, reference, memo, created_at)
                SELECT 'adjustment', 'bench:fund:' || id, 'bench funding', now() - interval '31 days'
                  FROM payments_ledgeraccount WHERE id = ANY(%s) ORDER BY id
                """,
                [wallet_ids],
            )
            cursor.execute(
                """
                INSERT INTO payments_posting (entry_id, account_id, amount, currency)
                SELECT e.id, v.account_id, v.amount, 'CNY'
                  FROM payments_ledgeraccount a
                  JOIN payments_journalentry e ON e.reference = 'bench:fund:' || a.id
                 CROSS JOIN LATERAL (VALUES (a.id, %s::bigint), (%s, -%s::bigint)) v(account_id, amount)
                 WHERE a.id = ANY(%s)
                """,
                [funds, clearing.pk, funds, wallet_ids],
            )
        _balances_from_postings()
    return wallet_ids


def _balances_from_postings() -> None:
    """Every balance = the sum of its postings (the ledger's invariant), after a bulk load."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE payments_ledgeraccount a SET balance = s.total
              FROM (SELECT account_id, SUM(amount) AS total FROM payments_posting GROUP BY account_id) s
             WHERE a.id = s.account_id AND a.balance <> s.total
            """
        )


def _sessions(user_ids: list[int], path: str) -> None:
    """A login session per user and its access token (as a login issues them), written to
    ``path`` as ``[[user_id, token], ...]`` for the HTTP load generator."""
    from django.conf import settings
    from django.utils import timezone

    from accounts.models import LoginSession
    from accounts.tokens import issue_pair

    expires = timezone.now() + settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"]
    sessions, tokens = [], []
    for uid in user_ids:
        session = LoginSession(user_id=uid, device_name="bench", expires_at=expires)
        tokens.append([uid, issue_pair(session)["access"]])
        sessions.append(session)
    LoginSession.objects.bulk_create(sessions, batch_size=5000)
    with open(path, "w") as f:
        json.dump(tokens, f)


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


# --- the shapes -------------------------------------------------------------------------------


def wallets(n: int, k: int, tokens_path: str) -> dict:
    """n wallets; user i is friends with i±1..i±k (mod n)."""
    started = time.monotonic()
    users = _users("pw", n)
    _friends([(users[i], users[(i + d) % n]) for i in range(n) for d in range(1, k + 1)])
    wallet_ids = _wallets(users, funds=FUNDS, escrow="transfer_escrow")
    _sessions(users, tokens_path)
    _analyze()
    return {"user0": users[0] - 1, "wallet0": wallet_ids[0] - 1, "n": n, "k": k, "seconds": time.monotonic() - started,
            **_money()}  # fmt: skip


def hot(n: int, transfers: int, tokens_path: str) -> dict:
    """n hot wallets, all friends, and ``transfers`` earlier transfers among them."""
    from django.db import connection, transaction

    from messaging.models import Conversation, Message
    from payments.events import transfer_bubble
    from payments.models import Transfer

    started = time.monotonic()
    users = _users("ph", n)
    _friends([(a, b) for i, a in enumerate(users) for b in users[i + 1 :]])
    wallet_ids = _wallets(users, funds=FUNDS * 1000, escrow="transfer_escrow")
    first_transfer = (Transfer.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    with transaction.atomic(), connection.cursor() as cursor:
        # Transfers between random pairs over the last 30 days, ids in time order; auto-accepted.
        cursor.execute(
            """
            INSERT INTO payments_transfer
                   (sender_id, receiver_id, amount, currency, note, status, created_at, expires_at, resolved_at)
            SELECT h[x.s], h[1 + ((x.s - 1 + x.d) %% %s)], x.amount, 'CNY', '', 'accepted', x.ts,
                   x.ts + interval '24 hours', x.ts
              FROM (SELECT 1 + floor(random() * %s)::int AS s, 1 + floor(random() * (%s - 1))::int AS d,
                           1 + floor(random() * 100)::int AS amount, now() - random() * interval '30 days' AS ts
                      FROM generate_series(1, %s)) x,
                   (SELECT %s::bigint[] AS h) hh
             ORDER BY x.ts
            """,
            [n, n, n, transfers, users],
        )
        cursor.execute(
            """
            INSERT INTO payments_journalentry (kind, reference, memo, created_at)
            SELECT v.kind, 'transfer:' || t.id || ':' || v.step, '', t.created_at
              FROM payments_transfer t
             CROSS JOIN (VALUES ('transfer_send', 'send', 1), ('transfer_accept', 'accept', 2)) v(kind, step, ord)
             WHERE t.id >= %s ORDER BY t.id, v.ord
            """,
            [first_transfer],
        )
        # send: sender's wallet -> sender's escrow; accept: escrow -> receiver's wallet.
        cursor.execute(
            """
            INSERT INTO payments_posting (entry_id, account_id, amount, currency)
            SELECT e.id, a.id, v.sign * t.amount, 'CNY'
              FROM payments_transfer t
             CROSS JOIN (VALUES ('send', 'wallet', 's', -1), ('send', 'transfer_escrow', 's', 1),
                                ('accept', 'transfer_escrow', 's', -1), ('accept', 'wallet', 'r', 1))
                   v(step, kind, side, sign)
              JOIN payments_journalentry e ON e.reference = 'transfer:' || t.id || ':' || v.step
              JOIN payments_ledgeraccount a
                ON a.kind = v.kind AND a.currency = 'CNY'
               AND a.owner_id = CASE v.side WHEN 's' THEN t.sender_id ELSE t.receiver_id END
             WHERE t.id >= %s
            """,
            [first_transfer],
        )
        _balances_from_postings()
        # Three events per side (transfer.created, transfer.accepted, message.new), numbered.
        cursor.execute(
            """
            INSERT INTO core_event (user_id, seq, type, data, created_at)
            SELECT x.uid, row_number() OVER (PARTITION BY x.uid ORDER BY x.id, x.ord), x.type,
                   jsonb_build_object('transfer', jsonb_build_object('id', x.id, 'amount', x.amount,
                                      'status', 'accepted')), x.created_at
              FROM (SELECT t.id, t.amount, t.created_at, u.uid, k.ord, k.type
                      FROM payments_transfer t
                     CROSS JOIN LATERAL (VALUES (t.sender_id), (t.receiver_id)) u(uid)
                     CROSS JOIN (VALUES (1, 'payments.transfer.created'), (2, 'payments.transfer.accepted'),
                                        (3, 'message.new')) k(ord, type)
                     WHERE t.id >= %s) x
            """,
            [first_transfer],
        )
        cursor.execute(
            """
            UPDATE core_userstream s SET last_seq = m.top
              FROM (SELECT user_id, MAX(seq) AS top FROM core_event WHERE user_id = ANY(%s) GROUP BY user_id) m
             WHERE s.user_id = m.user_id
            """,
            [users],
        )
    # Each transfer's message in the pair's direct chat (the ORM: messaging's model is its own).
    convs = {
        (c.user_low_id, c.user_high_id): c
        for c in Conversation.objects.filter(user_low_id__in=users, kind="direct")
    }
    seqs = {key: 0 for key in convs}
    last_at = {}
    rows = []
    for t in Transfer.objects.filter(id__gte=first_transfer).order_by("id").iterator(chunk_size=10000):
        key = (min(t.sender_id, t.receiver_id), max(t.sender_id, t.receiver_id))
        seqs[key] += 1
        last_at[key] = t.created_at
        rows.append(Message(conversation=convs[key], seq=seqs[key], sender_id=t.sender_id, kind="transfer",
                            client_msg_id=f"transfer/{t.id}", content=transfer_bubble(t)))  # fmt: skip
    with transaction.atomic():
        Message.objects.bulk_create(rows, batch_size=5000)
        for key, conv in convs.items():
            Conversation.objects.filter(pk=conv.pk).update(
                last_seq=seqs[key], last_message_at=last_at.get(key)
            )
    _sessions(users, tokens_path)
    _analyze()
    return {"user0": users[0] - 1, "wallet0": wallet_ids[0] - 1, "n": n, "transfers": len(rows),
            "seconds": time.monotonic() - started, **_money()}  # fmt: skip


def grab(n: int, tokens_path: str) -> dict:
    """A sender and n grabbers (the sender's friends, not each other's), all in one group."""
    from accounts.models import Friendship
    from messaging import services as chat_services

    started = time.monotonic()
    sender = _users("pgsend", 1)[0]
    grabbers = _users("pg", n)
    Friendship.objects.bulk_create(
        [Friendship(user_id=sender, friend_id=g) for g in grabbers]
        + [Friendship(user_id=g, friend_id=sender) for g in grabbers],
        batch_size=10000,
    )
    _wallets([sender], funds=FUNDS, escrow="red_packet_escrow")
    wallet_ids = _wallets(grabbers, funds=1, escrow=None)  # the grabbers' wallets, contiguous
    group = chat_services.group_create(creator_id=sender, name="bench red packets", member_ids=grabbers)
    _sessions(grabbers, tokens_path)
    _analyze()
    return {"sender": sender, "user0": grabbers[0] - 1, "wallet0": wallet_ids[0] - 1, "n": n,
            "conversation": group.pk, "seconds": time.monotonic() - started, **_money()}  # fmt: skip


def packet(sender: int, conversation: int, count: int, amount: int) -> dict:
    from payments import red_packets
    from payments.ledger import account_for
    from payments.models import AccountKind

    sent = red_packets.red_packet_send(
        sender_id=sender,
        kind="lucky",
        total_amount=amount,
        count=count,
        conversation_id=conversation,
        pin=PIN,
    )
    escrow = account_for(kind=AccountKind.RED_PACKET_ESCROW, owner_id=sender, currency=sent.currency)
    return {"packet": sent.pk, "escrow": escrow.pk, "count": count, "amount": amount}


# --- the checks -------------------------------------------------------------------------------

USER_SIDE = ("wallet", "transfer_escrow", "red_packet_escrow", "withdrawal_hold")


def _money() -> dict:
    from django.db.models import Sum

    from payments.models import LedgerAccount

    return {
        "user_money": int(
            LedgerAccount.objects.filter(kind__in=USER_SIDE).aggregate(t=Sum("balance"))["t"] or 0
        )
    }


def check(expect: dict) -> dict:
    """The invariants after a run. ``expect``: ``user_money`` (before the run), optionally
    ``escrows_empty`` (every transfer auto-accepted), ``packets`` ({id: [count, amount]})."""
    from django.db.models import Count, Sum

    from messaging.models import Message
    from payments.ledger import ledger_reconcile
    from payments.models import NON_NEGATIVE_KINDS, LedgerAccount, RedPacket, Transfer

    run = ledger_reconcile()
    negative = LedgerAccount.objects.filter(kind__in=NON_NEGATIVE_KINDS, balance__lt=0).count()
    money = _money()["user_money"]
    notes: list[str] = []
    ok = run.ok and negative == 0 and money == expect["user_money"]
    if expect.get("escrows_empty"):
        held = LedgerAccount.objects.filter(kind="transfer_escrow").exclude(balance=0).count()
        service = Transfer.objects.exclude(note="pgbench")
        bubbles = Message.objects.filter(kind="transfer").count()
        pending = service.exclude(status="accepted").count()
        notes.append(
            f"transfer escrows holding money: {held}; transfers not accepted: {pending}; "
            f"service transfers {service.count():,} / transfer messages {bubbles:,}"
        )
        ok = ok and held == 0 and pending == 0 and service.count() == bubbles
    for packet_id, (count, amount) in (expect.get("packets") or {}).items():
        p = RedPacket.objects.get(pk=int(packet_id))
        grabs = p.grabs.aggregate(n=Count("id"), total=Sum("amount"), users=Count("user_id", distinct=True))
        good = (
            grabs["n"] == count == grabs["users"]
            and grabs["total"] == amount == p.total_amount
            and p.remaining_amount == 0
            and p.remaining_count == 0
            and p.status == "finished"
        )
        notes.append(
            f"packet {p.pk}: {grabs['n']} grabs by {grabs['users']} users summing to {grabs['total']} "
            f"of {p.total_amount} ({'ok' if good else 'WRONG'})"
        )
        ok = ok and good
    return {
        "ok": ok,
        "reconcile_ok": run.ok,
        "mismatches": run.mismatches[:5],
        "entries": run.entries_checked,
        "accounts": run.accounts_checked,
        "negative": negative,
        "user_money": money,
        "user_money_before": expect["user_money"],
        "user_money_unchanged": money == expect["user_money"],
        "notes": notes,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), default=str))
