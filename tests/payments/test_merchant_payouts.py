"""Merchant payouts: only an active merchant pays out, and never the money of its open disputes."""

from __future__ import annotations

import pytest

from payments import disputes, merchants, settlement
from payments.models import AccountKind, Dispute, MerchantPayout
from superapp.core.errors import ApplicationError

from .conftest import PIN, with_pin
from .merchant_client import IDEM, funded_payer, open_merchant
from .test_merchant_settlement import YESTERDAY, paid_on
from .test_orders_api import code, merchant_balance, wallet

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(bob):
    shop = open_merchant(bob)
    with_pin(bob)
    return shop


@pytest.fixture
def settled(shop, alice, client_for):
    """A 10,000 order paid by alice and settled: 9,940 available to the merchant."""
    funded_payer(alice, 100_000)
    order = paid_on(shop, client_for(alice), YESTERDAY, 10_000, "a")
    assert settlement.settlements_run() == 1
    assert merchant_balance(shop, AccountKind.MERCHANT_AVAILABLE) == 9_940
    return order


def payout(client, shop, amount: int, key: str):
    return client.post(
        f"/api/v1/payments/merchants/{shop.merchant.id}/payouts",
        {"amount": amount, "pin": PIN},
        format="json",
        **{IDEM: key},
    )


def test_a_suspended_merchant_cannot_pay_out(shop, settled, bob, admin_user, client_for):
    merchants.merchant_staff_update(actor_id=admin_user.pk, merchant_id=shop.merchant.id, status="suspended")
    refused = payout(client_for(bob), shop, 1_000, "p1")
    assert refused.status_code == 403 and code(refused) == "merchant_suspended"
    # The check under the merchant's lock too (a suspension between the early check and the payout).
    with pytest.raises(ApplicationError) as error:
        merchants._merchant_payout(merchant_id=shop.merchant.id, user_id=bob.pk, amount=1_000, currency="CNY")
    assert error.value.code == "merchant_suspended"
    assert wallet(bob) == 0 and merchant_balance(shop, AccountKind.MERCHANT_AVAILABLE) == 9_940
    assert not MerchantPayout.objects.exists()

    merchants.merchant_staff_update(actor_id=admin_user.pk, merchant_id=shop.merchant.id, status="active")
    assert payout(client_for(bob), shop, 1_000, "p2").status_code == 201 and wallet(bob) == 1_000


def test_open_disputes_are_held_back_so_the_customer_can_be_refunded(
    shop, settled, alice, bob, admin_user, client_for
):
    dispute = disputes.dispute_open(actor_id=admin_user.pk, order_id=settled.pk, reason="other", amount=2_000)
    assert merchants.merchant_disputed_amount(merchant_id=shop.merchant.id, currency="CNY") == 2_000
    owner = client_for(bob)
    everything = payout(owner, shop, 9_940, "p1")
    assert everything.status_code == 409 and code(everything) == "merchant_balance_insufficient"
    assert "2000" in everything.json()["error"]["message"]
    with pytest.raises(ApplicationError) as error:  # and under the lock
        merchants._merchant_payout(merchant_id=shop.merchant.id, user_id=bob.pk, amount=7_941, currency="CNY")
    assert error.value.code == "merchant_balance_insufficient"
    assert payout(owner, shop, 7_940, "p2").status_code == 201
    assert merchant_balance(shop, AccountKind.MERCHANT_AVAILABLE) == 2_000

    disputes.dispute_resolve(actor_id=admin_user.pk, dispute_id=dispute.pk, for_customer=True)
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.WON_BY_CUSTOMER and dispute.refund.amount == 2_000
    assert wallet(alice) == 100_000 - 10_000 + 2_000
    # 2,000 less the 12 of fee it gave back came from the available balance.
    assert merchant_balance(shop, AccountKind.MERCHANT_AVAILABLE) == 12
    assert merchants.merchant_disputed_amount(merchant_id=shop.merchant.id, currency="CNY") == 0
    assert payout(owner, shop, 12, "p3").status_code == 201 and wallet(bob) == 7_952


def test_a_dispute_won_by_the_merchant_releases_the_hold(shop, settled, bob, admin_user, client_for):
    dispute = disputes.dispute_open(actor_id=admin_user.pk, order_id=settled.pk, reason="other")
    owner = client_for(bob)
    assert code(payout(owner, shop, 1, "p1")) == "merchant_balance_insufficient"  # all 10,000 disputed
    disputes.dispute_resolve(actor_id=admin_user.pk, dispute_id=dispute.pk, for_customer=False)
    assert payout(owner, shop, 9_940, "p2").status_code == 201 and wallet(bob) == 9_940
