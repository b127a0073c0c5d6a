"""Merchant management by its owner (JWT): create, list, get, update, rotate keys, static QR, orders."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from payments import merchants
from payments.merchants import IssuedKey
from payments.models import AccountKind, LedgerAccount, Merchant, MerchantKey
from superapp.core.errors import ApplicationError

from .merchant_client import MerchantClient, funded_payer, open_merchant, pay

pytestmark = pytest.mark.django_db

URL = "/api/v1/payments/merchants"


def code(response) -> str:
    return response.json()["error"]["code"]


def test_create_shows_the_secret_once_and_opens_two_ledger_accounts(client_for, bob):
    owner = client_for(bob)
    response = owner.post(URL, {"name": "Corner Cafe"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["fee_rate_bps"] == 60 and body["currency"] == "CNY" and body["status"] == "active"
    assert body["api_key"]["secret"].startswith("sk_") and body["api_key"]["key_id"].startswith("mk_")
    assert body["balances"] == {"pending": 0, "available": 0}
    assert body["static_qr_url"].startswith("superapp://pay/merchant?code=")
    assert body["notify_secret"].startswith("whsec_")
    kinds = set(LedgerAccount.objects.filter(merchant_id=body["id"]).values_list("kind", flat=True))
    assert kinds == {AccountKind.MERCHANT, AccountKind.MERCHANT_AVAILABLE}

    detail = owner.get(f"{URL}/{body['id']}").json()
    assert "api_key" not in detail and body["api_key"]["secret"] not in str(detail)
    assert [k["key_id"] for k in detail["keys"]] == [body["api_key"]["key_id"]]
    assert [m["id"] for m in owner.get(URL).json()] == [body["id"]]

    # The issued key works on the orders API.
    issued = IssuedKey(
        merchant=Merchant.objects.get(), key=MerchantKey.objects.get(), secret=body["api_key"]["secret"]
    )
    assert MerchantClient(issued).create_order().status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "Shop", "notify_url": "not a url"}, "notify_url"),
        ({"name": "Shop", "kind": "mini_program"}, "kind"),
        ({"name": "Shop", "kind": "bank"}, "kind"),
        ({"name": "Shop", "kind": "mini_program", "external_ref": "wx123"}, "kind"),
        ({"name": "Shop", "kind": "official_account", "external_ref": "gh_123"}, "kind"),
        ({"name": "Shop", "external_ref": "wx123"}, "external_ref"),
        ({"name": "Shop", "notify_url": "http://[::1"}, "notify_url"),
        ({"name": "Shop", "notify_url": "http://a]b.com/"}, "notify_url"),
    ],
)
def test_bad_merchants_are_refused(client_for, bob, body, field):
    response = client_for(bob).post(URL, body, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"]
    assert not Merchant.objects.exists() and not LedgerAccount.objects.exists()


def test_nobody_claims_a_mini_programs_merchant_through_the_api(client_for, bob):
    body = {"name": "Mini", "kind": "mini_program", "external_ref": "someone-elses-wx123"}
    response = client_for(bob).post(URL, body, format="json")
    assert response.status_code == 400 and code(response) == "invalid"
    assert (
        "opened from that official account or mini-program" in response.json()["error"]["fields"]["kind"][0]
    )
    assert not Merchant.objects.exists()


def test_a_mini_program_gets_one_merchant_through_the_service(bob, carol):
    # What the mini-programs app's own service will call, once it has checked the administrator.
    issued = merchants.merchant_create(
        owner_id=bob.pk, name="Mini", kind="mini_program", external_ref="wx123"
    )
    assert (issued.merchant.kind, issued.merchant.external_ref) == ("mini_program", "wx123")
    with pytest.raises(ApplicationError) as error:
        merchants.merchant_create(owner_id=carol.pk, name="Mini", kind="mini_program", external_ref="wx123")
    assert error.value.code == "merchant_exists" and Merchant.objects.count() == 1


def test_update_and_rotate(client_for, bob):
    owner = client_for(bob)
    created = owner.post(URL, {"name": "Cafe"}, format="json").json()
    patched = owner.patch(
        f"{URL}/{created['id']}", {"name": "Cafe 2", "notify_url": "https://example.com/n"}, format="json"
    )
    assert patched.status_code == 200 and patched.json()["name"] == "Cafe 2"
    assert patched.json()["notify_url"] == "https://example.com/n"
    bad = owner.patch(f"{URL}/{created['id']}", {"notify_url": "javascript:alert(1)"}, format="json")
    assert bad.status_code == 400 and "notify_url" in bad.json()["error"]["fields"]
    for broken in ("http://[::1", "http://a]b.com/"):
        bad = owner.patch(f"{URL}/{created['id']}", {"notify_url": broken}, format="json")
        assert bad.status_code == 400 and code(bad) == "webhook_url_invalid"
    assert Merchant.objects.get().notify_url == "https://example.com/n"

    rotated = owner.post(f"{URL}/{created['id']}/keys", {"grace_hours": 2}, format="json")
    assert rotated.status_code == 201 and rotated.json()["secret"] != created["api_key"]["secret"]
    keys = owner.get(f"{URL}/{created['id']}").json()["keys"]
    assert [k["key_id"] for k in keys] == [rotated.json()["key_id"], created["api_key"]["key_id"]]
    assert keys[1]["expires_at"] is not None and keys[0]["expires_at"] is None
    assert owner.post(f"{URL}/{created['id']}/keys", {"grace_hours": 999}, format="json").status_code == 400

    secret = owner.post(f"{URL}/{created['id']}/notify-secret").json()["notify_secret"]
    assert secret != created["notify_secret"] and secret.startswith("whsec_")


def test_another_users_merchant_is_404(client_for, bob, carol):
    created = client_for(bob).post(URL, {"name": "Cafe"}, format="json").json()
    stranger = client_for(carol)
    for method, path in [
        ("get", f"{URL}/{created['id']}"),
        ("patch", f"{URL}/{created['id']}"),
        ("post", f"{URL}/{created['id']}/keys"),
        ("post", f"{URL}/{created['id']}/notify-secret"),
        ("get", f"{URL}/{created['id']}/static-qr.png"),
        ("get", f"{URL}/{created['id']}/orders"),
    ]:
        assert getattr(stranger, method)(path, {}, format="json").status_code == 404, path
    assert stranger.get(URL).json() == []
    assert MerchantKey.objects.count() == 1


def test_the_static_qr_is_a_png(client_for, bob):
    owner = client_for(bob)
    created = owner.post(URL, {"name": "Cafe"}, format="json").json()
    response = owner.get(f"{URL}/{created['id']}/static-qr.png")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).format == "PNG"


def test_the_owner_lists_orders(client_for, bob, alice, django_assert_max_num_queries):
    shop = open_merchant(bob)
    for n in range(3):
        shop.create_order(f"order-000{n}")
    funded_payer(alice)
    from payments.models import MerchantOrder

    pay(client_for(alice), MerchantOrder.objects.get(out_trade_no="order-0001").code)
    owner = client_for(bob)
    with django_assert_max_num_queries(4):
        listed = owner.get(f"{URL}/{shop.merchant.id}/orders").json()["results"]
    assert [o["out_trade_no"] for o in listed] == ["order-0002", "order-0001", "order-0000"]
    paid = owner.get(f"{URL}/{shop.merchant.id}/orders?status=paid").json()["results"]
    assert [o["out_trade_no"] for o in paid] == ["order-0001"]
    assert owner.get(f"{URL}/{shop.merchant.id}/orders?status=nope").status_code == 400
