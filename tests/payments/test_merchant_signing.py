"""The orders API's HMAC authentication: every bad request is a clear 401 and stores nothing."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from payments import merchants, signing
from payments.models import MerchantKey, MerchantOrder

from .merchant_client import MerchantClient, open_merchant

pytestmark = pytest.mark.django_db

ORDER = {"out_trade_no": "order-0001", "amount": 1_000, "description": "2 coffees"}


@pytest.fixture
def shop(alice):
    return open_merchant(alice)


def _code(response) -> str:
    return response.json()["error"]["code"]


def test_a_signed_request_is_answered_and_the_answer_is_signed(shop):
    response = shop.post("/api/v1/pay/orders", ORDER)
    assert response.status_code == 201, response.content
    assert shop.verified(response)
    assert response.json()["out_trade_no"] == "order-0001"
    # A tampered answer does not verify.
    assert not signing.response_signature_valid(
        secret=shop.secret, headers=dict(response.headers), body=response.content + b" "
    )
    assert not signing.response_signature_valid(
        secret="sk_other", headers=dict(response.headers), body=response.content
    )


def test_errors_after_authentication_are_signed_too(shop):
    response = shop.get("/api/v1/pay/orders/out-trade-no/nope-000")
    assert response.status_code == 404 and _code(response) == "not_found"
    assert shop.verified(response)


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ({"secret": "sk_wrong"}, "invalid_signature"),
        ({"sign_body": b'{"amount": 1}'}, "invalid_signature"),  # body changed after signing
        ({"sign_path": "/api/v1/pay/orders?x=1"}, "invalid_signature"),
        ({"timestamp": int(time.time()) - 1_000}, "stale_timestamp"),
        ({"timestamp": int(time.time()) + 1_000}, "stale_timestamp"),
        ({"key_id": "mk_unknown"}, "unknown_key"),
        ({"nonce": "short"}, "invalid_nonce"),
        ({"authorization": "Bearer abc"}, "malformed_authorization"),
        ({"authorization": 'SUPERAPP-HMAC-SHA256 key_id="mk_x"'}, "malformed_authorization"),
    ],
)
def test_bad_signatures_are_refused_and_nothing_is_stored(shop, tamper, code):
    response = shop.post("/api/v1/pay/orders", ORDER, **tamper)
    assert response.status_code == 401, response.content
    assert _code(response) == code
    assert response.json()["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith("SUPERAPP-HMAC-SHA256")
    assert signing.RESPONSE_SIGNATURE not in response.headers
    assert not MerchantOrder.objects.exists()


@pytest.mark.parametrize("signature", ["é" * 64, "€", "A" * 64, "0" * 63, "0" * 65, "g" * 64, ""])
def test_a_signature_that_is_not_64_lowercase_hex_digits_is_a_401(shop, signature):
    header = signing.authorization_header(
        key_id=shop.key_id,
        secret=shop.secret,
        method="POST",
        path="/api/v1/pay/orders",
        body=b"{}",
        nonce="nonce-0000000009",
    )
    header = header.rpartition('signature="')[0] + f'signature="{signature}"'
    response = shop.post("/api/v1/pay/orders", ORDER, authorization=header)
    assert response.status_code == 401 and _code(response) == "invalid_signature"
    assert not MerchantOrder.objects.exists()
    # The nonce was not burnt by it.
    assert shop.post("/api/v1/pay/orders", ORDER, nonce="nonce-0000000009").status_code == 201


def test_a_non_ascii_response_signature_does_not_verify():
    headers = {
        signing.RESPONSE_TIMESTAMP: "1",
        signing.RESPONSE_NONCE: "n",
        signing.RESPONSE_SIGNATURE: "é" * 64,
    }
    assert signing.response_signature_valid(secret="sk_x", headers=headers, body=b"") is False


def test_a_nonce_is_remembered_one_second_longer_than_its_timestamp_stays_valid(settings):
    from django.core.cache import cache

    settings.PAYMENTS_SIGNATURE_WINDOW = 300
    now = int(time.time())
    for timestamp, seconds in [(now + 300, 601), (now, 301), (now - 300, 1), (now - 299, 2)]:
        nonce = f"nonce-ttl-{secrets.token_hex(8)}"
        assert signing.nonce_claim(key_id="mk_ttl", nonce=nonce, timestamp=timestamp)
        assert not signing.nonce_claim(key_id="mk_ttl", nonce=nonce, timestamp=timestamp)
        redis = cache._cache.get_client(write=False)  # Django's RedisCache (the test settings)
        ttl = redis.ttl(cache.make_key(f"payments:nonce:mk_ttl:{nonce}"))
        # The cache keeps it until timestamp + window + 1 s (within the second this test took).
        assert seconds - 1 <= ttl <= seconds, (timestamp - now, ttl)


def test_a_reused_nonce_is_refused(shop):
    first = shop.post("/api/v1/pay/orders", ORDER, nonce="nonce-0000000001")
    assert first.status_code == 201
    replay = shop.post(
        "/api/v1/pay/orders", {**ORDER, "out_trade_no": "order-0002"}, nonce="nonce-0000000001"
    )
    assert replay.status_code == 401 and _code(replay) == "nonce_reused"
    assert MerchantOrder.objects.count() == 1
    # Another merchant's key has its own nonces.
    other = MerchantClient(merchants.merchant_create(owner_id=shop.merchant.owner_id, name="Other"))
    assert other.post("/api/v1/pay/orders", ORDER, nonce="nonce-0000000001").status_code == 201


def test_a_wrong_signature_does_not_burn_the_nonce(shop):
    assert shop.post("/api/v1/pay/orders", ORDER, nonce="nonce-0000000002", secret="sk_x").status_code == 401
    assert shop.post("/api/v1/pay/orders", ORDER, nonce="nonce-0000000002").status_code == 201


def test_no_credentials_or_a_user_token_get_401(shop, client_for, alice):
    assert shop.client.post("/api/v1/pay/orders", ORDER, format="json").status_code == 401
    response = client_for(alice).post("/api/v1/pay/orders", ORDER, format="json")
    assert response.status_code == 401 and _code(response) == "malformed_authorization"


def test_a_rotated_key_works_during_its_grace_then_stops(shop, alice):
    rotated = merchants.merchant_key_rotate(
        user_id=alice.pk, merchant_id=shop.merchant.id, grace=timedelta(hours=1)
    )
    new = MerchantClient(rotated)
    assert new.post("/api/v1/pay/orders", ORDER).status_code == 201
    assert shop.get("/api/v1/pay/orders/out-trade-no/order-0001").status_code == 200  # old key, in grace
    MerchantKey.objects.filter(key_id=shop.key_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = shop.get("/api/v1/pay/orders/out-trade-no/order-0001")
    assert response.status_code == 401 and _code(response) == "unknown_key"
    assert new.get("/api/v1/pay/orders/out-trade-no/order-0001").status_code == 200


def test_rotation_without_grace_revokes_at_once(shop, alice):
    merchants.merchant_key_rotate(user_id=alice.pk, merchant_id=shop.merchant.id, grace=timedelta(0))
    assert _code(shop.post("/api/v1/pay/orders", ORDER)) == "unknown_key"


def test_a_deactivated_owner_stops_the_keys(shop, alice):
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert _code(shop.post("/api/v1/pay/orders", ORDER)) == "unknown_key"


def test_secrets_are_stored_encrypted(shop):
    row = MerchantKey.objects.get(key_id=shop.key_id)
    assert shop.secret not in row.secret_encrypted
    assert signing.secret_decrypt(row.secret_encrypted) == shop.secret


def test_the_encryption_key_can_be_rotated(settings):
    old, new = "a" * 43 + "=", "b" * 43 + "="
    settings.PAYMENTS_MERCHANT_KEY_ENCRYPTION_KEYS = [old]
    token = signing.secret_encrypt("sk_test")
    settings.PAYMENTS_MERCHANT_KEY_ENCRYPTION_KEYS = [new, old]  # new one first: it encrypts
    signing.secret_decrypt.cache_clear()
    assert signing.secret_decrypt(token) == "sk_test"
    settings.PAYMENTS_MERCHANT_KEY_ENCRYPTION_KEYS = [new]
    signing.secret_decrypt.cache_clear()
    from cryptography.fernet import InvalidToken

    with pytest.raises(InvalidToken):
        signing.secret_decrypt(token)


def test_the_signature_covers_the_query_string(shop):
    shop.post("/api/v1/pay/orders", ORDER)
    path = "/api/v1/pay/orders/out-trade-no/order-0001?lang=en"
    assert shop.get(path).status_code == 200
    assert (
        _code(shop.get(path, sign_path="/api/v1/pay/orders/out-trade-no/order-0001")) == "invalid_signature"
    )


def test_each_merchant_has_its_own_request_budget(shop, bob, monkeypatch):
    from payments.api.merchant_auth import MerchantRateThrottle

    monkeypatch.setattr(MerchantRateThrottle, "THROTTLE_RATES", {"merchant_api": "3/min"})
    for _ in range(3):
        assert shop.query("nothing-here").status_code == 404
    throttled = shop.query("nothing-here")
    assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "throttled"
    assert shop.verified(throttled)  # signed like every answer
    other = open_merchant(bob, name="Other shop")  # its own budget
    assert other.query("nothing-here").status_code == 404
