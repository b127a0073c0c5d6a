"""Settlement T+1: each ended business day moves once to the withdrawable balance; CSV report."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from payments import events, settlement, tasks
from payments.models import AccountKind, JournalEntry, MerchantOrder, SettlementBatch
from payments.orders import business_day
from superapp.core.models import Event

from .conftest import PIN
from .merchant_client import IDEM, funded_payer, open_merchant, pay
from .test_orders_api import code, merchant_balance, wallet

pytestmark = pytest.mark.django_db

YESTERDAY = date(2026, 1, 14)
DAY_BEFORE = date(2026, 1, 13)


@pytest.fixture
def shop(bob):
    return open_merchant(bob)


@pytest.fixture
def app(alice, client_for):
    funded_payer(alice, 100_000)
    return client_for(alice)


def paid_on(shop, app, day: date, amount: int, n: str) -> MerchantOrder:
    """An order paid through the API, then booked on ``day`` (as if paid then)."""
    order_id = shop.create_order(f"order-{n}", amount=amount).json()["id"]
    assert pay(app, MerchantOrder.objects.get(pk=order_id).code, key=f"pay-{n}").status_code == 200
    MerchantOrder.objects.filter(pk=order_id).update(settlement_date=day)
    return MerchantOrder.objects.get(pk=order_id)


def test_business_day_is_beijing_time(settings):
    settings.PAYMENTS_SETTLEMENT_TIMEZONE = "Asia/Shanghai"
    just_before = datetime(2026, 1, 14, 15, 59, 59, tzinfo=ZoneInfo("UTC"))  # 23:59:59 in Beijing
    assert business_day(just_before) == date(2026, 1, 14)
    assert business_day(just_before + timedelta(seconds=1)) == date(2026, 1, 15)


def test_ended_days_settle_net_of_fees_and_refunds(shop, app):
    paid_on(shop, app, YESTERDAY, 10_000, "a")  # fee 60
    paid_on(shop, app, YESTERDAY, 2_500, "b")  # fee 15
    paid_on(shop, app, DAY_BEFORE, 1_000, "c")  # fee 6
    shop.refund("refund-0001", 1_000, out_trade_no="order-b")  # fee back 6, from the unsettled balance
    today = paid_on(shop, app, business_day(timezone.now()), 700, "d")  # today: not settled yet
    assert merchant_balance(shop) == 9_940 + 2_485 + 994 - 994 + 696

    # apply(), not delay().get(): Celery's join guard is process-global, and eager tasks run in
    # other tests' threads can leave it set (see the report on tests/payments/test_concurrency.py).
    assert tasks.settle_merchants.apply().result == 2
    batches = {b.date: b for b in SettlementBatch.objects.all()}
    y = batches[YESTERDAY]
    assert (y.order_count, y.gross, y.fees, y.refund_count, y.refunds, y.fee_refunds, y.net) == (
        2,
        12_500,
        75,
        1,
        1_000,
        6,
        11_431,
    )
    assert batches[DAY_BEFORE].net == 994
    assert merchant_balance(shop, AccountKind.MERCHANT_AVAILABLE) == 11_431 + 994
    assert merchant_balance(shop) == 696  # today's payment waits for tomorrow
    assert y.entry.kind == JournalEntry.Kind.MERCHANT_SETTLEMENT
    assert not SettlementBatch.objects.filter(date=today.settlement_date).exists()
    event = (
        Event.objects.filter(user=shop.merchant.owner, type=events.MERCHANT_SETTLED).order_by("seq").last()
    )
    assert event.data == events.settlement_payload(y)

    # Running again settles nothing twice.
    assert settlement.settlements_run() == 0
    assert (
        SettlementBatch.objects.count() == 2
        and merchant_balance(shop, AccountKind.MERCHANT_AVAILABLE) == 12_425
    )
    batch, created = settlement.settlement_settle(merchant_id=shop.merchant.id, currency="CNY", day=YESTERDAY)
    assert batch == y and not created


def test_today_is_not_settled(shop, app):
    today = business_day(timezone.now())
    batch, created = settlement.settlement_settle(merchant_id=shop.merchant.id, currency="CNY", day=today)
    assert batch is None and not created


def test_a_fully_refunded_day_settles_zero_without_an_entry(shop, app):
    paid_on(shop, app, YESTERDAY, 1_000, "a")
    shop.refund("refund-0001", 1_000, out_trade_no="order-a")
    assert settlement.settlements_run() == 1
    batch = SettlementBatch.objects.get()
    assert batch.net == 0 and batch.entry is None and merchant_balance(shop) == 0


def test_the_owner_withdraws_settled_money_to_the_wallet(shop, app, bob, client_for):
    from .conftest import with_pin

    paid_on(shop, app, YESTERDAY, 10_000, "a")
    settlement.settlements_run()
    with_pin(bob)
    owner = client_for(bob)
    url = f"/api/v1/payments/merchants/{shop.merchant.id}/payouts"
    too_much = owner.post(url, {"amount": 9_941, "pin": PIN}, format="json", **{IDEM: "p0"})
    assert too_much.status_code == 409 and code(too_much) == "merchant_balance_insufficient"
    wrong = owner.post(url, {"amount": 1, "pin": "000000"}, format="json", **{IDEM: "p2"})
    assert code(wrong) == "invalid_pin" and wallet(bob) == 0
    done = owner.post(url, {"amount": 9_940, "pin": PIN}, format="json", **{IDEM: "p1"})
    assert done.status_code == 201 and done.json()["amount"] == 9_940
    assert wallet(bob) == 9_940 and merchant_balance(shop, AccountKind.MERCHANT_AVAILABLE) == 0
    assert (
        client_for(app.user).post(url, {"amount": 1, "pin": PIN}, format="json", **{IDEM: "p3"}).status_code
        == 404
    )


def test_the_csv_report(shop, app, client_for, bob):
    paid_on(shop, app, YESTERDAY, 10_000, "a")
    paid_on(shop, app, DAY_BEFORE, 1_000, "b")
    settlement.settlements_run()
    owner = client_for(bob)
    response = owner.get(f"/api/v1/payments/merchants/{shop.merchant.id}/settlements.csv")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:9] == [
        "date",
        "currency",
        "orders",
        "refunds",
        "gross",
        "fees",
        "refunded",
        "fees_refunded",
        "net",
    ]
    assert [r[0] for r in rows[1:]] == ["2026-01-13", "2026-01-14", "total"]
    assert rows[2][2:9] == ["1", "0", "10000", "60", "0", "0", "9940"]
    assert rows[3][2:9] == ["2", "0", "11000", "66", "0", "0", "10934"]
    only = owner.get(f"/api/v1/payments/merchants/{shop.merchant.id}/settlements.csv?since=2026-01-14")
    assert [r[0] for r in csv.reader(io.StringIO(b"".join(only.streaming_content).decode()))][1:] == [
        "2026-01-14",
        "total",
    ]
    for wrong in ("yesterday", "2026-02-30"):
        bad = owner.get(f"/api/v1/payments/merchants/{shop.merchant.id}/settlements.csv?since={wrong}")
        assert bad.status_code == 400 and "since" in bad.json()["error"]["fields"]
    listed = owner.get(f"/api/v1/payments/merchants/{shop.merchant.id}/settlements").json()["results"]
    assert [b["date"] for b in listed] == ["2026-01-14", "2026-01-13"]
    stranger = client_for(app.user)
    assert stranger.get(f"/api/v1/payments/merchants/{shop.merchant.id}/settlements.csv").status_code == 404
    assert stranger.get(f"/api/v1/payments/merchants/{shop.merchant.id}/settlements").status_code == 404


def test_settlement_batches_are_unique_per_day(shop, app):
    paid_on(shop, app, YESTERDAY, 1_000, "a")
    settlement.settlements_run()
    from django.db import IntegrityError, transaction

    batch = SettlementBatch.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        SettlementBatch.objects.create(
            merchant=batch.merchant, currency="CNY", date=YESTERDAY, order_count=0, refund_count=0,
            gross=0, fees=0, refunds=0, fee_refunds=0, net=0,
        )  # fmt: skip


def test_a_payment_after_its_day_was_settled_is_booked_to_the_next_day(shop, app, monkeypatch):
    """Clocks apart at midnight: the worker (ahead) settled today while a payment of today (web
    host's clock) was still to come. The payment goes to the next day, which settles it."""
    today = business_day(timezone.now())
    early = paid_on(shop, app, today, 1_000, "a")
    worker_clock = lambda moment: business_day(moment) + timedelta(days=1)  # noqa: E731
    monkeypatch.setattr(settlement, "business_day", worker_clock)
    batch, created = settlement.settlement_settle(merchant_id=shop.merchant.id, currency="CNY", day=today)
    assert created and batch.net == 994

    late_id = shop.create_order("order-late", amount=2_000).json()["id"]
    assert pay(app, MerchantOrder.objects.get(pk=late_id).code, key="pay-late").status_code == 200
    late = MerchantOrder.objects.get(pk=late_id)
    assert business_day(late.paid_at) == today and late.settlement_date == today + timedelta(days=1)
    assert early.settlement_date == today and merchant_balance(shop) == 1_988

    monkeypatch.setattr(settlement, "business_day", lambda m: business_day(m) + timedelta(days=2))
    batch, created = settlement.settlement_settle(
        merchant_id=shop.merchant.id, currency="CNY", day=today + timedelta(days=1)
    )
    assert created and (batch.order_count, batch.net) == (1, 1_988)
    assert merchant_balance(shop) == 0
    assert merchant_balance(shop, AccountKind.MERCHANT_AVAILABLE) == 994 + 1_988
