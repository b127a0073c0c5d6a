"""Payment PIN hashes: keyed HMAC, rotation, and the upgrade of hashes made before (argon2)."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import make_password

from payments import pins, services
from payments.models import WalletSettings
from superapp.core.errors import ApplicationError

from .conftest import PIN, with_pin

pytestmark = pytest.mark.django_db


def stored(user) -> str:
    return WalletSettings.objects.get(user=user).pin_hash


def test_hash_is_keyed_salted_and_verifies():
    one, two = pins.pin_hash(PIN), pins.pin_hash(PIN)
    assert one != two and one.startswith("pin_hmac_sha256$") and PIN not in one  # salted
    assert pins.pin_matches(PIN, one) == (True, False)
    assert pins.pin_matches("654321", one) == (False, False)
    algorithm, key_id, salt, digest = one.split("$")
    assert len(digest) == 64 and len(salt) == 16
    assert pins.pin_matches(PIN, f"{algorithm}${key_id}${salt}${'0' * 64}") == (False, False)
    assert pins.pin_matches(PIN, "pin_hmac_sha256$broken") == (False, False)


def test_a_stolen_table_is_useless_without_the_key(settings):
    settings.PAYMENTS_PIN_KEYS = ["the-server-key"]
    encoded = pins.pin_hash(PIN)
    settings.PAYMENTS_PIN_KEYS = ["an-entirely-different-key"]
    with pytest.raises(pins.PinKeyMissing):  # unknown key id: no way to check it
        pins.pin_matches(PIN, encoded)


def test_setting_pin_keys_later_locks_nobody_out(settings, alice):
    with_pin(alice)  # hashed under the key derived from SECRET_KEY
    settings.PAYMENTS_PIN_KEYS = ["a-new-dedicated-key"]
    services.pin_verify(user_id=alice.pk, pin=PIN)
    assert stored(alice).split("$")[1] == pins._key_id(b"a-new-dedicated-key")  # re-hashed


def test_a_missing_key_is_a_server_fault_not_a_wrong_pin(settings, alice, client_for, bob):
    settings.PAYMENTS_PIN_KEYS = ["key-one"]
    with_pin(alice)
    settings.PAYMENTS_PIN_KEYS = ["key-two"]
    settings.SECRET_KEY = "another-secret-key-" + "y" * 40  # and the derived key changed too
    for _ in range(settings.PAYMENTS_PIN_MAX_ATTEMPTS + 1):
        with pytest.raises(ApplicationError) as failure:
            services.pin_verify(user_id=alice.pk, pin=PIN)
        assert failure.value.code == "pin_check_unavailable" and failure.value.status_code == 503
    row = WalletSettings.objects.get(user=alice)
    assert row.pin_failed_attempts == 0 and row.pin_locked_until is None  # nobody locked out


def test_key_rotation_rehashes_on_the_next_payment(settings, alice):
    settings.PAYMENTS_PIN_KEYS = ["old-key"]
    with_pin(alice)
    old = stored(alice)
    settings.PAYMENTS_PIN_KEYS = ["new-key", "old-key"]
    services.pin_verify(user_id=alice.pk, pin=PIN)
    new = stored(alice)
    assert new != old and new.split("$")[1] != old.split("$")[1]
    settings.PAYMENTS_PIN_KEYS = ["new-key"]  # the old key retired: the PIN still works
    services.pin_verify(user_id=alice.pk, pin=PIN)
    assert stored(alice) == new


def test_argon2_hash_from_before_verifies_once_then_is_replaced(settings, alice):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
    with_pin(alice)
    WalletSettings.objects.filter(user=alice).update(pin_hash=make_password(PIN))
    assert stored(alice).startswith("argon2$")
    with pytest.raises(ApplicationError) as wrong:
        services.pin_verify(user_id=alice.pk, pin="000000")
    assert wrong.value.code == "invalid_pin" and stored(alice).startswith("argon2$")
    services.pin_verify(user_id=alice.pk, pin=PIN)
    assert stored(alice).startswith("pin_hmac_sha256$")
    services.pin_verify(user_id=alice.pk, pin=PIN)
    row = WalletSettings.objects.get(user=alice)
    assert row.pin_failed_attempts == 0
