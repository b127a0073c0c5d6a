"""Merchant payments under concurrency, on the real PostgreSQL, through the real services in threads."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from django.db import connection

from payments import disputes, merchants, orders, payment_codes, settlement
from payments.models import (
    AccountKind,
    LedgerAccount,
    Merchant,
    MerchantOrder,
    MerchantRefund,
    SettlementBatch,
)
from superapp.core import prepared
from superapp.core.errors import ApplicationError
from tests.threads import indexed, run_together

from .conftest import PIN
from .merchant_client import funded_payer, open_merchant

pytestmark = pytest.mark.django_db(transaction=True)


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

    outcomes = run_together(indexed(8, job)).errors
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

    outcomes = run_together(indexed(10, job)).errors
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

    outcomes = run_together(indexed(6, job)).errors
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

    outcomes = run_together(indexed(4, job)).errors
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

    assert run_together(indexed(6, job)).errors == [None] * 6
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

    assert run_together(indexed(4, job)).errors == [None] * 4
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

    outcomes = run_together(indexed(8, job)).errors
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


def _paid_order(shop, payer, out_trade_no: str = "order-0001", amount: int = 2_500) -> MerchantOrder:
    order, _ = orders.order_create(
        merchant_id=shop.merchant.id, out_trade_no=out_trade_no, amount=amount, description="d"
    )
    orders.order_pay(payer_id=payer.pk, code=order.code, pin=PIN)
    return order


def test_a_merchant_resolution_during_a_customer_resolutions_refund_is_refused(make_user, monkeypatch):
    """The reviewer's interleaving, forced: staff A's "for the customer" is refunding while staff
    B decides "for the merchant". B must be refused: the money moved, the dispute says so."""
    staff = make_user(is_staff=True)
    shop = open_merchant(make_user())
    payer = funded_payer(make_user(), 10_000)
    order = _paid_order(shop, payer)
    dispute = disputes.dispute_open(actor_id=staff.pk, order_id=order.id, reason="other", amount=1_000)
    refunded, merchant_tried = threading.Event(), threading.Event()
    real_refund_create = disputes.refund_create

    def refund_then_wait(**kwargs):
        result = real_refund_create(**kwargs)
        refunded.set()
        merchant_tried.wait(timeout=20)
        return result

    monkeypatch.setattr(disputes, "refund_create", refund_then_wait)

    def job(index: int) -> None:
        if index == 0:
            disputes.dispute_resolve(actor_id=staff.pk, dispute_id=dispute.id, for_customer=True)
            return
        try:
            assert refunded.wait(timeout=20)
            disputes.dispute_resolve(actor_id=staff.pk, dispute_id=dispute.id, for_customer=False)
        finally:
            merchant_tried.set()

    outcomes = run_together(indexed(2, job)).errors
    assert codes_of(outcomes) == ["dispute_resolving", "ok"], outcomes
    dispute.refresh_from_db()
    assert dispute.status == "won_by_customer" and dispute.refund.amount == 1_000
    assert MerchantRefund.objects.count() == 1 and balance(kind=AccountKind.WALLET, owner=payer) == 8_500


def test_simultaneous_resolutions_either_way_agree_with_the_money(make_user):
    staff = make_user(is_staff=True)
    shop = open_merchant(make_user())
    payer = funded_payer(make_user(), 50_000)
    for n in range(4):
        order = _paid_order(shop, payer, out_trade_no=f"order-{n:04d}")
        dispute = disputes.dispute_open(actor_id=staff.pk, order_id=order.id, reason="other", amount=700)

        def job(index: int, dispute_id=dispute.id) -> None:
            disputes.dispute_resolve(actor_id=staff.pk, dispute_id=dispute_id, for_customer=index % 2 == 0)

        outcomes = run_together(indexed(4, job)).errors
        dispute.refresh_from_db()
        refunds = list(MerchantRefund.objects.filter(order_id=order.id))
        assert codes_of(outcomes).count("ok") == 1, outcomes
        assert set(codes_of(outcomes)) <= {"ok", "dispute_resolved", "dispute_resolving"}, outcomes
        if dispute.status == "won_by_customer":
            assert [r.amount for r in refunds] == [700] and dispute.refund_id == refunds[0].id
        else:
            assert dispute.status == "won_by_merchant" and refunds == [] and dispute.refund_id is None


def test_one_mini_program_opened_twice_at_once_gives_409_not_500(make_user):
    owners = [make_user() for _ in range(4)]

    def job(index: int) -> None:
        merchants.merchant_create(
            owner_id=owners[index].pk, name="Mini", kind="mini_program", external_ref="wx-same"
        )

    outcomes = run_together(indexed(4, job)).errors
    assert codes_of(outcomes) == ["merchant_exists"] * 3 + ["ok"], outcomes
    assert Merchant.objects.filter(external_ref="wx-same").count() == 1


def test_one_owner_opening_merchants_at_once_stays_under_the_maximum(make_user):
    owner = make_user()
    for n in range(merchants.MAX_MERCHANTS_PER_OWNER - 1):
        merchants.merchant_create(owner_id=owner.pk, name=f"Shop {n}")

    def job(index: int) -> None:
        merchants.merchant_create(owner_id=owner.pk, name=f"Late {index}")

    outcomes = run_together(indexed(4, job)).errors
    assert codes_of(outcomes) == ["ok"] + ["too_many_merchants"] * 3, outcomes
    assert Merchant.objects.filter(owner=owner).count() == merchants.MAX_MERCHANTS_PER_OWNER


def test_one_micropay_request_sent_again_while_running_returns_its_order(make_user, monkeypatch):
    """The merchant's server retries a micropay (same out_trade_no, same code) before the first
    answered: every copy passed the "existing order" check, the later ones waited on the code's
    lock. They get the order (a replay), not 409 payment_code_used."""
    payer = funded_payer(make_user(), 10_000)
    shop = open_merchant(make_user())
    code, _row = payment_codes.payment_code_issue(user_id=payer.pk)
    all_checked = threading.Barrier(4)
    real_lock = orders.payment_code_lock

    def lock_once_all_have_checked(**kwargs):
        all_checked.wait(timeout=20)  # every request is past the existing-order check
        return real_lock(**kwargs)

    monkeypatch.setattr(orders, "payment_code_lock", lock_once_all_have_checked)
    results = []

    def job(index: int) -> None:
        order, created = orders.order_micropay(
            merchant_id=shop.merchant.id,
            out_trade_no="scan-0001",
            amount=300,
            auth_code=code,
            description="d",
        )
        results.append((order.id, created, order.status))

    outcomes = run_together(indexed(4, job)).errors
    assert outcomes == [None] * 4, outcomes
    assert len({r[0] for r in results}) == 1 and {r[2] for r in results} == {"paid"}
    assert sorted(r[1] for r in results) == [False] * 3 + [True]
    assert MerchantOrder.objects.count() == 1 and balance(kind=AccountKind.WALLET, owner=payer) == 9_700


def test_the_same_code_and_out_trade_no_with_another_amount_is_still_a_conflict(make_user):
    payer = funded_payer(make_user(), 10_000)
    shop = open_merchant(make_user())
    code, _row = payment_codes.payment_code_issue(user_id=payer.pk)
    first, created = orders._micropay(
        merchant=shop.merchant,
        out_trade_no="scan-0001",
        amount=300,
        currency="CNY",
        auth_code=code,
        description="d",
        attach="",
        notify_url="",
        request_hash="first",
    )
    assert created and first.status == "paid"
    # Past the existing-order check (as a concurrent copy would be), other parameters: 409.
    with pytest.raises(ApplicationError) as error:
        orders._micropay(
            merchant=shop.merchant,
            out_trade_no="scan-0001",
            amount=900,
            currency="CNY",
            auth_code=code,
            description="d",
            attach="",
            notify_url="",
            request_hash="other",
        )
    assert error.value.code == "out_trade_no_conflict"
    # Another order number with a used code: still payment_code_used.
    with pytest.raises(ApplicationError) as error:
        orders._micropay(
            merchant=shop.merchant,
            out_trade_no="scan-0002",
            amount=300,
            currency="CNY",
            auth_code=code,
            description="d",
            attach="",
            notify_url="",
            request_hash="first",
        )
    assert error.value.code == "payment_code_used"
    assert balance(kind=AccountKind.WALLET, owner=payer) == 9_700


def _first(queries: list[str], *needles: str) -> int:
    return next(i for i, sql in enumerate(queries) if all(n in sql for n in needles))


def test_payments_and_refunds_take_their_locks_in_the_documented_order(make_user):
    """docs/payments.md: business rows (code, order, payer's settings), then the merchant row
    (FOR KEY SHARE, also taken by an INSERT referencing it), then lock-free writes (order,
    notification, audit), the ledger accounts, and the event stream heads last."""
    from django.db import connection as conn
    from django.test.utils import CaptureQueriesContext

    payer = funded_payer(make_user(), 10_000)
    shop = open_merchant(make_user(), notify_url="https://merchant.example/notify")
    code, _row = payment_codes.payment_code_issue(user_id=payer.pk)
    with CaptureQueriesContext(conn) as micropay:
        order, _ = orders.order_micropay(
            merchant_id=shop.merchant.id,
            out_trade_no="scan-0001",
            amount=300,
            auth_code=code,
            description="d",
        )
    sql = [q["sql"] for q in micropay.captured_queries]
    code_lock = _first(sql, 'FROM "payments_paymentcode"', "FOR UPDATE")
    settings_lock = _first(sql, 'FROM "payments_walletsettings"', "FOR UPDATE")
    order_insert = _first(sql, 'INSERT INTO "payments_merchantorder"')
    assert code_lock < settings_lock < order_insert < _first(sql, "FOR KEY SHARE")

    with CaptureQueriesContext(conn) as static:
        orders.merchant_static_pay(
            payer_id=payer.pk, static_code=shop.merchant.static_code, amount=200, pin=PIN
        )
    sql = [q["sql"] for q in static.captured_queries]
    settings_lock = _first(sql, 'FROM "payments_walletsettings"', "FOR UPDATE")
    assert settings_lock < _first(sql, 'INSERT INTO "payments_merchantorder"')

    staff = make_user(is_staff=True)
    with CaptureQueriesContext(conn) as refund:
        orders.refund_create(
            merchant_id=shop.merchant.id,
            order_id=order.id,
            out_refund_no="refund-0001",
            amount=100,
            initiated_by="staff",
            actor_id=staff.pk,
        )
    # (a prepared statement is logged as its EXECUTE: read the statement behind it)
    sql = [prepared.sql_of(q["sql"]) for q in refund.captured_queries]
    writes = [
        _first(sql, 'UPDATE "payments_merchantorder"'),
        _first(sql, 'INSERT INTO "core_webhookdelivery"'),
        _first(sql, 'INSERT INTO "core_auditlogentry"'),
    ]
    ledger = _first(sql, "payments_ledgeraccount", "FOR UPDATE")
    heads = _first(sql, "core_userstream", "FOR UPDATE")
    assert _first(sql, "FOR KEY SHARE") < min(writes) and max(writes) < ledger < heads
