"""Staff in the admin: refunds and disputes through the services, each recorded in the audit log."""

from __future__ import annotations

import re

import pytest

from payments import disputes, settlement
from payments.models import AccountKind, Dispute, LedgerAccount, Merchant, MerchantOrder, MerchantRefund
from superapp.core.audit import audit_entries_for
from superapp.core.errors import ApplicationError

from .merchant_client import funded_payer, open_merchant, pay
from .test_orders_api import fees, wallet

pytestmark = pytest.mark.django_db


def refund_form(admin_client, order) -> dict:
    """The refund form as the admin renders it: its hidden ``out_refund_no``, drawn on GET."""
    page = admin_client.get(f"/admin/payments/merchantorder/{order.pk}/refund/")
    assert page.status_code == 200
    [out_refund_no] = re.findall(rb'name="out_refund_no" value="(staff-[0-9a-f]{20})"', page.content)
    return {"out_refund_no": out_refund_no.decode()}


@pytest.fixture
def order(bob, alice, client_for):
    shop = open_merchant(bob)
    funded_payer(alice)
    order_id = shop.create_order(amount=2_500).json()["id"]
    assert pay(client_for(alice), MerchantOrder.objects.get(pk=order_id).code).status_code == 200
    return MerchantOrder.objects.get(pk=order_id)


def test_staff_refund_part_of_an_order_in_the_admin(admin_client, admin_user, order, alice):
    page = admin_client.get(f"/admin/payments/merchantorder/{order.pk}/change/")
    assert (
        page.status_code == 200
        and f"/admin/payments/merchantorder/{order.pk}/refund/".encode() in page.content
    )
    form = admin_client.get(f"/admin/payments/merchantorder/{order.pk}/refund/")
    assert form.status_code == 200 and b"left 2500" in form.content
    done = admin_client.post(
        f"/admin/payments/merchantorder/{order.pk}/refund/",
        {"amount": 1_000, "reason": "cold", **refund_form(admin_client, order)},
    )
    assert done.status_code == 302
    refund = MerchantRefund.objects.get()
    assert refund.amount == 1_000 and refund.initiated_by == "staff" and refund.reason == "cold"
    assert wallet(alice) == 7_500 + 1_000
    [entry] = audit_entries_for(target=order)
    assert entry.actor_id == admin_user.pk and entry.action == "payments.order.refund"
    assert entry.details == {
        "refund_id": refund.id,
        "amount": 1_000,
        "reason": "cold",
        "initiated_by": "staff",
    }
    assert entry.ip == "127.0.0.1"

    too_much = admin_client.post(
        f"/admin/payments/merchantorder/{order.pk}/refund/",
        {"amount": 9_999, **refund_form(admin_client, order)},
    )
    assert too_much.status_code == 200 and b"more than what is left" in too_much.content
    rest = admin_client.post(
        f"/admin/payments/merchantorder/{order.pk}/refund/",
        {"amount": "", **refund_form(admin_client, order)},
    )
    assert rest.status_code == 302
    assert MerchantOrder.objects.get().status == "refunded" and wallet(alice) == 10_000
    assert len(audit_entries_for(target=order)) == 2


@pytest.mark.parametrize("amount", [1_000, ""])
def test_the_same_refund_form_submitted_twice_refunds_once(admin_client, order, alice, amount):
    form = {"amount": amount, "reason": "double click", **refund_form(admin_client, order)}
    first = admin_client.post(f"/admin/payments/merchantorder/{order.pk}/refund/", form)
    second = admin_client.post(f"/admin/payments/merchantorder/{order.pk}/refund/", form)
    assert first.status_code == second.status_code == 302
    [refund] = MerchantRefund.objects.all()
    assert refund.out_refund_no == form["out_refund_no"] and refund.amount == (amount or 2_500)
    assert wallet(alice) == 7_500 + refund.amount
    assert len(audit_entries_for(target=order)) == 1
    # The same form with another amount is refused, not a second refund.
    other = admin_client.post(f"/admin/payments/merchantorder/{order.pk}/refund/", {**form, "amount": 100})
    assert other.status_code == 200 and b"already used with other parameters" in other.content
    # Without the form's number (a forged or stale post): refused, nothing moves.
    bare = admin_client.post(f"/admin/payments/merchantorder/{order.pk}/refund/", {"amount": 100})
    assert bare.status_code == 200 and MerchantRefund.objects.count() == 1


def test_a_dispute_won_by_the_customer_refunds_it(admin_client, admin_user, order, alice):
    opened = admin_client.post(
        f"/admin/payments/merchantorder/{order.pk}/dispute/",
        {"reason": "not_received", "amount": 2_000, "details": "never came"},
    )
    assert opened.status_code == 302
    dispute = Dispute.objects.get()
    assert (dispute.status, dispute.amount, dispute.opened_by_id) == ("open", 2_000, admin_user.pk)
    twice = admin_client.post(f"/admin/payments/merchantorder/{order.pk}/dispute/", {"reason": "other"})
    assert twice.status_code == 200 and b"already has an open dispute" in twice.content

    page = admin_client.get(f"/admin/payments/dispute/{dispute.pk}/change/")
    assert f"/admin/payments/dispute/{dispute.pk}/resolve/".encode() in page.content
    resolved = admin_client.post(
        f"/admin/payments/dispute/{dispute.pk}/resolve/", {"decision": "customer", "note": "courier lost it"}
    )
    assert resolved.status_code == 302
    dispute.refresh_from_db()
    assert dispute.status == "won_by_customer" and dispute.refund.amount == 2_000
    assert dispute.refund.initiated_by == "dispute" and dispute.resolved_by_id == admin_user.pk
    assert wallet(alice) == 7_500 + 2_000
    actions = [e.action for e in audit_entries_for(target=dispute)]
    assert actions == ["payments.dispute.resolve", "payments.dispute.open"]
    assert [e.action for e in audit_entries_for(target=order)] == ["payments.order.refund"]
    again = admin_client.post(f"/admin/payments/dispute/{dispute.pk}/resolve/", {"decision": "customer"})
    assert again.status_code == 200 and b"already resolved" in again.content
    assert MerchantRefund.objects.count() == 1


def test_a_dispute_won_by_the_merchant_moves_nothing(admin_user, order, alice):
    dispute = disputes.dispute_open(actor_id=admin_user.pk, order_id=order.pk, reason="other")
    assert dispute.amount == 2_500
    disputes.dispute_resolve(
        actor_id=admin_user.pk, dispute_id=dispute.pk, for_customer=False, note="delivered"
    )
    dispute.refresh_from_db()
    assert dispute.status == "won_by_merchant" and dispute.refund is None
    assert wallet(alice) == 7_500 and not MerchantRefund.objects.exists()


def test_a_dispute_resolved_after_a_crash_refunds_once(admin_user, order, alice):
    dispute = disputes.dispute_open(actor_id=admin_user.pk, order_id=order.pk, reason="duplicate", amount=500)
    from payments import orders

    # The refund went through, then the process died before the dispute was marked resolved.
    orders.refund_create(
        merchant_id=order.merchant_id, order_id=order.pk, out_refund_no=f"dispute-{dispute.pk}", amount=500
    )
    disputes.dispute_resolve(actor_id=admin_user.pk, dispute_id=dispute.pk, for_customer=True)
    assert MerchantRefund.objects.count() == 1 and wallet(alice) == 8_000


def test_disputes_need_a_paid_order_and_a_sane_amount(admin_user, bob):
    shop = open_merchant(bob)
    unpaid = MerchantOrder.objects.get(pk=shop.create_order().json()["id"])
    with pytest.raises(ApplicationError) as error:
        disputes.dispute_open(actor_id=admin_user.pk, order_id=unpaid.pk, reason="other")
    assert error.value.code == "order_not_paid"
    with pytest.raises(ApplicationError) as error:
        disputes.dispute_open(actor_id=admin_user.pk, order_id=unpaid.pk, reason="because")
    assert error.value.code == "invalid"


def test_staff_suspend_and_change_the_fee_rate_audited(admin_client, admin_user, order, bob, client_for):
    merchant = order.merchant
    response = admin_client.post(
        f"/admin/payments/merchant/{merchant.pk}/change/", {"status": "suspended", "fee_rate_bps": 30}
    )
    assert response.status_code == 302
    merchant.refresh_from_db()
    assert (merchant.status, merchant.fee_rate_bps) == ("suspended", 30)
    [entry] = audit_entries_for(target=merchant)
    assert entry.action == "payments.merchant.update" and entry.actor_id == admin_user.pk
    assert entry.details == {
        "before": {"status": "active", "fee_rate_bps": 60},
        "after": {"status": "suspended", "fee_rate_bps": 30},
    }
    bad = admin_client.post(
        f"/admin/payments/merchant/{merchant.pk}/change/", {"status": "active", "fee_rate_bps": -1}
    )
    assert bad.status_code == 200 and Merchant.objects.get().fee_rate_bps == 30


def test_admin_settlement_report_and_pages(admin_client, order, bob):
    MerchantOrder.objects.update(settlement_date="2026-01-14")
    settlement.settlements_run()
    report = admin_client.get(f"/admin/payments/merchant/{order.merchant_id}/settlements.csv")
    assert report.status_code == 200 and b"2026-01-14,CNY,1,0,2500,15,0,0,2485" in b"".join(
        report.streaming_content
    )
    for path in [
        "merchant", "merchantorder", "merchantrefund", "merchantkey", "paymentcode", "settlementbatch", "merchantpayout",
        "dispute",
    ]:  # fmt: skip
        page = admin_client.get(f"/admin/payments/{path}/")
        assert page.status_code == 200, path
    assert b"settlements.csv" in admin_client.get("/admin/payments/settlementbatch/").content
    available = LedgerAccount.objects.get(kind=AccountKind.MERCHANT_AVAILABLE, merchant_id=order.merchant_id)
    assert available.balance == 2_485 and fees() == 15


def test_non_staff_cannot_use_the_staff_views(client, order, alice):
    client.force_login(alice)
    response = client.post(f"/admin/payments/merchantorder/{order.pk}/refund/", {"amount": 100})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert not MerchantRefund.objects.exists()
