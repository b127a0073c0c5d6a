"""Merchant payments under concurrency, on the real PostgreSQL, through the real services in threads."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from django.db import connection

from payments import orders, payment_codes, settlement
from payments.models import AccountKind, LedgerAccount, MerchantOrder, MerchantRefund, SettlementBatch
from superapp.core.errors import ApplicationError

from .conftest import PIN
from .merchant_client import funded_payer, open_merchant

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(workers: int, job) -> list[BaseException | None]:
    """Start ``workers`` threads at one barrier; each returns its exception or None."""
    barrier = threading.Barrier(workers)
    outcomes: list[BaseException | None] = [None] * workers

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            job(index)
        except BaseException as exc:  # collected for the assertions
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return outcomes


def codes_of(outcomes) -> list[str]:
    return sorted(getattr(o, "code", type(o).__name__) if o else "ok" for o in outcomes)


def balance(**filters) -> int:
    return LedgerAccount.objects.get(**filters).balance


def test_one_order_paid_by_simultaneous_requests_is_paid_once(make_user, settings):
    assert connection.vendor == "postgresql"
    shop = open_merchant(make_user())
    payers = [funded_payer(make_user(), 10_000) for _ in range(3)]
    order, _ = orders.order_create(
        merchant_id=shop.merchant.id, out_trade_no="order-0001", amount=2_500, description="d"
    )

    def job(index: int) -> None:
        orders.order_pay(payer_id=payers[index % 3].pk, code=order.code, pin=PIN)

    outcomes = run_together(8, job)
    assert codes_of(outcomes) == ["ok"] + ["order_paid"] * 7, outcomes
    order.refresh_from_db()
    assert order.status == "paid"
    assert sum(balance(kind=AccountKind.WALLET, owner=p) for p in payers) == 30_000 - 2_500
    assert balance(kind=AccountKind.MERCHANT, merchant=shop.merchant) == 2_485
    assert balance(kind=AccountKind.FEES, currency="CNY") == 15


def test_simultaneous_partial_refunds_never_exceed_what_was_paid(make_user):
    shop = open_merchant(make_user())
    payer = funded_payer(make_user(), 10_000)
    order, _ = orders.order_create(
        merchant_id=shop.merchant.id, out_trade_no="order-0001", amount=2_500, description="d"
    )
    orders.order_pay(payer_id=payer.pk, code=order.code, pin=PIN)

    def job(index: int) -> None:
        orders.refund_create(
            merchant_id=shop.merchant.id, order_id=order.id, out_refund_no=f"refund-{index:04d}", amount=400
        )

    outcomes = run_together(10, job)
    assert codes_of(outcomes) == ["ok"] * 6 + ["refund_exceeds_paid"] * 4, outcomes
    order.refresh_from_db()
    assert order.refunded_amount == 2_400 and MerchantRefund.objects.count() == 6
    assert balance(kind=AccountKind.WALLET, owner=payer) == 10_000 - 100
    # 15 of fee, 6 refunds of 400: the fee's share of 2,400 rounded half up is 14.4 -> 14.
    assert order.fee_refunded == 14 and balance(kind=AccountKind.FEES, currency="CNY") == 1
    assert balance(kind=AccountKind.MERCHANT, merchant=shop.merchant) == 2_485 - (2_400 - 14)


def test_one_out_refund_no_sent_at_once_refunds_once(make_user):
    shop = open_merchant(make_user())
    payer = funded_payer(make_user(), 10_000)
    order, _ = orders.order_create(
        merchant_id=shop.merchant.id, out_trade_no="order-0001", amount=2_500, description="d"
    )
    orders.order_pay(payer_id=payer.pk, code=order.code, pin=PIN)
    created = []

    def job(index: int) -> None:
        _refund, new = orders.refund_create(
            merchant_id=shop.merchant.id, order_id=order.id, out_refund_no="refund-same", amount=1_000
        )
        created.append(new)

    outcomes = run_together(6, job)
    assert outcomes == [None] * 6 and sorted(created) == [False] * 5 + [True]
    assert MerchantRefund.objects.count() == 1 and balance(kind=AccountKind.WALLET, owner=payer) == 8_500


def test_one_payment_code_charged_by_two_merchants_at_once_pays_once(make_user):
    payer = funded_payer(make_user(), 10_000)
    shops = [open_merchant(make_user(), name=f"Shop {i}") for i in range(4)]
    code, _row = payment_codes.payment_code_issue(user_id=payer.pk)

    def job(index: int) -> None:
        orders.order_micropay(
            merchant_id=shops[index].merchant.id,
            out_trade_no="scan-0001",
            amount=300,
            auth_code=code,
            description="d",
        )

    outcomes = run_together(4, job)
    assert codes_of(outcomes) == ["ok"] + ["payment_code_used"] * 3, outcomes
    assert MerchantOrder.objects.count() == 1 and balance(kind=AccountKind.WALLET, owner=payer) == 9_700


def test_the_same_out_trade_no_created_at_once_makes_one_order(make_user):
    shop = open_merchant(make_user())
    results = []

    def job(index: int) -> None:
        order, new = orders.order_create(
            merchant_id=shop.merchant.id, out_trade_no="order-0001", amount=100, description="d"
        )
        results.append((order.id, new))

    assert run_together(6, job) == [None] * 6
    assert len({r[0] for r in results}) == 1 and sorted(r[1] for r in results) == [False] * 5 + [True]


def test_settlement_run_concurrently_settles_once(make_user):
    shop = open_merchant(make_user())
    payer = funded_payer(make_user(), 10_000)
    for n in range(3):
        order, _ = orders.order_create(
            merchant_id=shop.merchant.id, out_trade_no=f"order-000{n}", amount=1_000, description="d"
        )
        orders.order_pay(payer_id=payer.pk, code=order.code, pin=PIN)
    MerchantOrder.objects.update(settlement_date=date(2026, 1, 14))
    counts = []

    def job(index: int) -> None:
        counts.append(settlement.settlements_run())

    assert run_together(4, job) == [None] * 4
    assert sorted(counts) == [0, 0, 0, 1] and SettlementBatch.objects.count() == 1
    assert balance(kind=AccountKind.MERCHANT_AVAILABLE, merchant=shop.merchant) == 3 * 994
    assert balance(kind=AccountKind.MERCHANT, merchant=shop.merchant) == 0


def test_payments_and_refunds_racing_keep_every_balance_exact(make_user, settings):
    """Payments to one merchant from several payers while the merchant refunds earlier ones:
    no error but the expected ones, nothing negative, and the ledger reconciles (fixture)."""
    settings.PAYMENTS_LIMITS = {"unverified": {"per_payment": 10**9, "per_day": 10**12}}
    shop = open_merchant(make_user())
    payers = [funded_payer(make_user(), 50_000) for _ in range(4)]
    paid = []
    for n in range(8):
        order, _ = orders.order_create(
            merchant_id=shop.merchant.id, out_trade_no=f"early-{n:04d}", amount=1_000, description="d"
        )
        orders.order_pay(payer_id=payers[n % 4].pk, code=order.code, pin=PIN)
        paid.append(order.id)

    def job(index: int) -> None:
        for n in range(6):
            if index % 2:
                orders.refund_create(
                    merchant_id=shop.merchant.id,
                    order_id=paid[(index + n) % 8],
                    out_refund_no=f"r-{index}-{n:04d}",
                    amount=150,
                )
            else:
                order, _ = orders.order_create(
                    merchant_id=shop.merchant.id,
                    out_trade_no=f"late-{index}-{n:04d}",
                    amount=700,
                    description="d",
                )
                orders.order_pay(payer_id=payers[index % 4].pk, code=order.code, pin=PIN)

    outcomes = run_together(8, job)
    assert all(
        o is None or (isinstance(o, ApplicationError) and o.code == "refund_exceeds_paid") for o in outcomes
    ), outcomes
    assert (
        not LedgerAccount.objects.filter(balance__lt=0)
        .exclude(kind__in=["provider_clearing", "fees"])
        .exists()
    )
    refunded = sum(MerchantOrder.objects.values_list("refunded_amount", flat=True))
    paid_total = sum(
        MerchantOrder.objects.filter(status__in=["paid", "refunded"]).values_list("amount", flat=True)
    )
    assert sum(balance(kind=AccountKind.WALLET, owner=p) for p in payers) == 200_000 - paid_total + refunded
