"""Money under concurrency, on the real PostgreSQL, through the real services in threads."""

from __future__ import annotations

import random
import threading

import pytest
from django.db import connection

from payments import services
from payments.ledger import InsufficientFunds, ledger_reconcile
from payments.models import AccountKind, LedgerAccount, Transfer
from tests.threads import indexed, run_together

from ..conftest import befriend
from .conftest import PIN, fund, with_pin


@pytest.mark.django_db(transaction=True)
def test_hundreds_of_transfers_among_hot_wallets(make_user, settings):
    """300 auto-accepted transfers in 10 threads among 4 wallets, in both directions: no
    deadlock or serialization error reaches a caller, no balance goes negative, the total is
    unchanged and the ledger reconciles."""
    assert connection.vendor == "postgresql"
    settings.PAYMENTS_LIMITS = {"unverified": {"per_payment": 10**9, "per_day": 10**12}}
    users = [make_user() for _ in range(4)]
    for i, a in enumerate(users):
        with_pin(a)
        fund(a, 5_000)
        services.wallet_settings_update(user_id=a.pk, auto_accept_transfers=True)
        for b in users[i + 1 :]:
            befriend(a, b)
    outcomes = {"ok": 0, "insufficient": 0}
    lock = threading.Lock()

    def job(index: int) -> None:
        rng = random.Random(index)
        for _ in range(30):
            src, dst = rng.sample(users, 2)
            try:
                services.transfer_create(
                    sender_id=src.pk, receiver_id=dst.pk, amount=rng.randint(1, 900), pin=PIN
                )
                key = "ok"
            except InsufficientFunds:
                key = "insufficient"
            with lock:
                outcomes[key] += 1

    errors = run_together(indexed(10, job), barrier=False).raised
    assert not errors, errors[:3]
    assert sum(outcomes.values()) == 300
    wallets = LedgerAccount.objects.filter(kind=AccountKind.WALLET)
    balances = list(wallets.values_list("balance", flat=True))
    assert min(balances) >= 0
    assert sum(balances) == 4 * 5_000
    assert not LedgerAccount.objects.filter(kind=AccountKind.TRANSFER_ESCROW).exclude(balance=0).exists()
    assert Transfer.objects.filter(status="accepted").count() == outcomes["ok"]
    assert ledger_reconcile().ok


@pytest.mark.django_db(transaction=True)
def test_double_spend_of_one_balance_succeeds_once(make_user):
    """Eight simultaneous transfers of the whole balance: exactly one goes through."""
    spender, *friends = [make_user() for _ in range(9)]
    with_pin(spender)
    fund(spender, 1_000)
    for friend in friends:
        befriend(spender, friend)
    results: list[str] = []

    def job(index: int) -> None:
        try:
            services.transfer_create(
                sender_id=spender.pk, receiver_id=friends[index].pk, amount=1_000, pin=PIN
            )
            results.append("ok")
        except InsufficientFunds:
            results.append("insufficient")

    errors = run_together(indexed(8, job)).raised
    assert not errors, errors
    assert sorted(results) == ["insufficient"] * 7 + ["ok"]
    assert LedgerAccount.objects.get(kind=AccountKind.WALLET, owner=spender).balance == 0
    assert LedgerAccount.objects.get(kind=AccountKind.TRANSFER_ESCROW).balance == 1_000
    assert ledger_reconcile().ok


@pytest.mark.django_db(transaction=True)
def test_one_idempotency_key_sent_concurrently_pays_once(make_user, client_for):
    """Six simultaneous POSTs of one transfer with one key: one transfer, the rest 409 or replays."""
    sender, receiver = make_user(), make_user()
    with_pin(sender)
    fund(sender, 1_000)
    befriend(sender, receiver)
    client = client_for(sender)
    statuses: list[int] = []

    def job(index: int) -> None:
        body = {"receiver_id": receiver.pk, "amount": 100, "pin": PIN}
        statuses.append(
            client.post(
                "/api/v1/payments/transfers", body, format="json", HTTP_IDEMPOTENCY_KEY="once"
            ).status_code
        )

    errors = run_together(indexed(6, job)).raised
    assert not errors, errors
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}
    assert Transfer.objects.count() == 1
    assert LedgerAccount.objects.get(kind=AccountKind.WALLET, owner=sender).balance == 900


@pytest.mark.django_db(transaction=True)
def test_a_webhook_delivered_twice_at_once_credits_once(make_user, settings):
    from payments.models import TopUp

    user = make_user()
    top_up = TopUp.objects.create(
        user=user, amount=500, currency="CNY", provider="stripe", provider_ref="pi_same"
    )
    outcomes: list[str] = []

    def job(index: int) -> None:
        outcomes.append(
            services.provider_event_handle(
                provider="stripe",
                event_id="evt_same",
                type="payment_intent.succeeded",
                obj={"id": "pi_same", "amount": 500, "amount_received": 500, "currency": "cny"},
            )
        )

    errors = run_together(indexed(4, job)).raised
    assert not errors, errors
    assert sorted(outcomes) == ["credited"] + ["duplicate"] * 3
    top_up.refresh_from_db()
    assert top_up.status == "succeeded"
    assert LedgerAccount.objects.get(kind=AccountKind.WALLET, owner=user).balance == 500
    assert ledger_reconcile().ok
