"""Withdrawals to bank: held at once, paid out by a task, returned on failure."""

from __future__ import annotations

import pytest

from payments import events, services, tasks
from payments.ledger import ledger_reconcile
from payments.models import AccountKind, LedgerAccount, Withdrawal
from superapp.core.models import Event

from .conftest import PIN
from .fake_stripe import FakeStripe
from .test_stripe import _deliver

IDEM = "HTTP_IDEMPOTENCY_KEY"


def _balance(user, kind=AccountKind.WALLET) -> int:
    row = LedgerAccount.objects.filter(kind=kind, owner=user).first()
    return row.balance if row else 0


def _withdraw(client, amount=2_000, bank="ba_123", key="w", **extra):
    body = {"amount": amount, "bank_account_id": bank, "pin": PIN, **extra}
    return client.post("/api/v1/payments/withdrawals", body, format="json", **{IDEM: key})


@pytest.fixture
def stripe_on(settings):
    from .fake_stripe import WEBHOOK_SECRET

    with FakeStripe() as fake:
        settings.PAYMENTS_PROVIDER = "stripe"
        settings.STRIPE_SECRET_KEY = "sk_test_fake"
        settings.STRIPE_API_BASE = fake.url
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        yield fake


@pytest.mark.django_db
def test_sandbox_withdrawal_is_held_then_paid(client_for, payer, django_capture_on_commit_callbacks):
    client = client_for(payer)
    with django_capture_on_commit_callbacks(execute=True):
        response = _withdraw(client)
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "pending"  # the answer is the committed state; the task follows
    assert Withdrawal.objects.get(pk=response.json()["id"]).status == "paid"
    assert _balance(payer) == 8_000 and _balance(payer, AccountKind.WITHDRAWAL_HOLD) == 0
    statuses = [
        e.data["status"]
        for e in Event.objects.filter(user=payer, type=events.WITHDRAWAL_UPDATED).order_by("seq")
    ]
    assert statuses == ["pending", "paid"]
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_the_hold_is_taken_before_the_task_runs(client_for, payer):
    response = _withdraw(client_for(payer))  # on-commit callbacks not run: the task has not started
    assert response.json()["status"] == "pending"
    assert _balance(payer) == 8_000 and _balance(payer, AccountKind.WITHDRAWAL_HOLD) == 2_000


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"amount": 10_001}, "insufficient_funds"),
        ({"amount": 0}, "invalid"),
        ({"bank": ""}, "invalid"),
        ({"pin": "000000"}, "invalid_pin"),
    ],
)
def test_bad_withdrawals_move_nothing(client_for, payer, extra, code):
    response = _withdraw(client_for(payer), **extra)
    assert response.status_code in (400, 403) and response.json()["error"]["code"] == code
    assert _balance(payer) == 10_000 and not Withdrawal.objects.exists()


@pytest.mark.django_db
def test_another_users_withdrawal_is_404(client_for, payer, bob):
    withdrawal_id = _withdraw(client_for(payer)).json()["id"]
    assert client_for(bob).get(f"/api/v1/payments/withdrawals/{withdrawal_id}").status_code == 404
    assert client_for(bob).get("/api/v1/payments/withdrawals").json()["results"] == []
    assert (
        client_for(payer).get(f"/api/v1/payments/withdrawals/{withdrawal_id}").json()["id"] == withdrawal_id
    )


@pytest.mark.django_db
def test_stripe_payout_paid_by_webhook(client_for, api, payer, stripe_on, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        withdrawal_id = _withdraw(client_for(payer)).json()["id"]
    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    assert withdrawal.status == "processing", withdrawal.failure_reason
    assert withdrawal.provider_ref.startswith("po_")
    request = next(r for r in stripe_on.requests if r["path"] == "/v1/payouts")
    assert (
        request["idempotency_key"] == f"withdrawal-{withdrawal_id}"
        and request["params"]["destination"] == "ba_123"
    )
    payout = stripe_on.payouts[withdrawal.provider_ref]
    body, sig = stripe_on.event("payout.paid", {**payout, "status": "paid"})
    assert _deliver(api, body, sig).json()["outcome"] == "paid"
    assert _deliver(api, body, sig).json()["outcome"] == "duplicate"
    late_paid = stripe_on.event("payout.paid", {**payout, "status": "paid"})  # another event id
    assert _deliver(api, *late_paid).json()["outcome"] == "ignored"
    assert _balance(payer) == 8_000 and _balance(payer, AccountKind.WITHDRAWAL_HOLD) == 0
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_payout_returned_by_the_bank_after_it_was_paid(
    client_for, api, payer, stripe_on, django_capture_on_commit_callbacks
):
    """Stripe: a payout marked paid can fail days later (the bank returns it): the money comes
    back to the wallet, once, and the user's devices are told."""
    with django_capture_on_commit_callbacks(execute=True):
        withdrawal_id = _withdraw(client_for(payer)).json()["id"]
    payout = stripe_on.payouts[Withdrawal.objects.get(pk=withdrawal_id).provider_ref]
    assert (
        _deliver(api, *stripe_on.event("payout.paid", {**payout, "status": "paid"})).json()["outcome"]
        == "paid"
    )
    assert _balance(payer) == 8_000
    returned = {
        **payout,
        "status": "failed",
        "failure_code": "account_closed",
        "failure_message": "Account closed",
    }
    body, sig = stripe_on.event("payout.failed", returned)
    assert _deliver(api, body, sig).json()["outcome"] == "returned"
    assert _deliver(api, body, sig).json()["outcome"] == "duplicate"
    again = stripe_on.event("payout.failed", returned)  # a second event id: still once
    assert _deliver(api, *again).json()["outcome"] == "ignored"
    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    assert withdrawal.status == "failed" and withdrawal.failure_reason == "Account closed"
    assert _balance(payer) == 10_000 and _balance(payer, AccountKind.WITHDRAWAL_HOLD) == 0
    assert ledger_reconcile().ok
    last = Event.objects.filter(user=payer, type="payments.withdrawal.updated").order_by("-seq").first()
    assert last.data["status"] == "failed"


@pytest.mark.django_db
def test_stripe_payout_failure_returns_the_hold(
    client_for, api, payer, stripe_on, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        withdrawal_id = _withdraw(client_for(payer)).json()["id"]
    payout = stripe_on.payouts[Withdrawal.objects.get(pk=withdrawal_id).provider_ref]
    failed = {
        **payout,
        "status": "failed",
        "failure_code": "account_closed",
        "failure_message": "The bank account has been closed",
    }
    assert _deliver(api, *stripe_on.event("payout.failed", failed)).json()["outcome"] == "returned"
    withdrawal = Withdrawal.objects.get(pk=withdrawal_id)
    assert withdrawal.status == "failed" and "closed" in withdrawal.failure_reason
    assert _balance(payer) == 10_000
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_rejected_payout_is_returned_at_once(
    client_for, payer, stripe_on, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        withdrawal_id = _withdraw(client_for(payer), bank="ba_invalid").json()["id"]
    assert Withdrawal.objects.get(pk=withdrawal_id).status == "failed"
    assert _balance(payer) == 10_000


@pytest.mark.django_db
def test_provider_down_keeps_the_hold_and_a_later_run_pays(client_for, payer, stripe_on, settings):
    from payments.providers import ProviderUnavailable

    withdrawal_id = _withdraw(client_for(payer), bank="ba_down").json()["id"]
    with pytest.raises(ProviderUnavailable):
        services.withdrawal_submit(withdrawal_id=withdrawal_id)
    assert Withdrawal.objects.get(pk=withdrawal_id).status == "pending"
    assert _balance(payer, AccountKind.WITHDRAWAL_HOLD) == 2_000
    Withdrawal.objects.filter(pk=withdrawal_id).update(destination="ba_ok")  # the provider is back
    tasks.submit_withdrawal.delay(withdrawal_id)
    assert Withdrawal.objects.get(pk=withdrawal_id).status == "processing"
    tasks.submit_withdrawal.delay(withdrawal_id)  # a second run does nothing
    assert len(stripe_on.payouts) == 1


@pytest.mark.django_db
def test_stale_pending_withdrawals_are_resubmitted(client_for, payer):
    from datetime import timedelta

    from django.utils import timezone

    withdrawal_id = _withdraw(client_for(payer)).json()["id"]
    assert tasks.resubmit_stale_withdrawals.delay().get() == 0
    Withdrawal.objects.filter(pk=withdrawal_id).update(created_at=timezone.now() - timedelta(minutes=11))
    assert tasks.resubmit_stale_withdrawals.delay().get() == 1
    assert Withdrawal.objects.get(pk=withdrawal_id).status == "paid"


@pytest.mark.django_db
def test_withdrawal_event_shape(payer):
    services.withdrawal_create(user_id=payer.pk, amount=100, destination="ba_1", pin=PIN)
    data = Event.objects.get(user=payer, type=events.WITHDRAWAL_UPDATED).data
    assert set(data) == {"id", "amount", "currency", "status", "failure_reason", "created_at", "resolved_at"}
    assert (data["amount"], data["currency"], data["status"]) == (100, "CNY", "pending")
