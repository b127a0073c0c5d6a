"""Push device registration: REST endpoints and services."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from superapp.core import push
from superapp.core.push import services
from superapp.core.push.models import PushDevice

pytestmark = pytest.mark.django_db

URL = "/api/v1/push/devices"
FCM_TOKEN = "dA1b2C3d4E5f6:APA91bH" + "x" * 140
IOS_TOKEN = "AB" * 32


def register(client, **data):
    return client.post(URL, {"platform": "android", "token": FCM_TOKEN, **data}, format="json")


def test_register_is_an_idempotent_upsert(client_for, alice):
    client = client_for(alice)
    first = register(client, app_id="com.example.superapp", locale="zh-Hans-CN")
    assert first.status_code == 201, first.json()
    body = first.json()
    assert body["platform"] == "android" and body["app_id"] == "com.example.superapp"
    assert body["locale"] == "zh-Hans-CN" and body["current"] is True and body["disabled_at"] is None
    assert body["token_hint"] == f"{FCM_TOKEN[:6]}…{FCM_TOKEN[-4:]}"
    assert FCM_TOKEN not in first.content.decode()

    again = register(client, locale="en")
    assert again.status_code == 200
    assert again.json()["id"] == body["id"] and again.json()["locale"] == "en"
    device = PushDevice.objects.get()
    assert device.session_id == uuid.UUID(client.tokens["session_id"])


def test_a_token_moving_to_another_user_is_reassigned(client_for, alice, bob):
    alice_client, bob_client = client_for(alice), client_for(bob)
    device_id = register(alice_client).json()["id"]
    moved = register(bob_client)
    assert moved.status_code == 200 and moved.json()["id"] == device_id
    device = PushDevice.objects.get()
    assert device.user_id == bob.id and device.session_id == uuid.UUID(bob_client.tokens["session_id"])
    assert alice_client.get(URL).json() == []
    assert [d["id"] for d in bob_client.get(URL).json()] == [device_id]


def test_registering_again_enables_a_disabled_device(client_for, alice):
    client = client_for(alice)
    device_id = register(client).json()["id"]
    push.devices_disable(device_ids=[device_id], reason="unregistered")
    assert client.get(URL).json()[0]["disabled_reason"] == "unregistered"
    body = register(client).json()
    assert body["disabled_at"] is None and body["disabled_reason"] == ""


def test_ios_tokens_are_hex_and_stored_lowercase(client_for, alice):
    client = client_for(alice)
    response = register(client, platform="ios", token=IOS_TOKEN, app_id="com.example.superapp")
    assert response.status_code == 201
    assert PushDevice.objects.get().token == IOS_TOKEN.lower()
    assert register(client, platform="ios", token=IOS_TOKEN.lower()).status_code == 200


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"platform": "blackberry"}, "platform"),
        ({"platform": "ios", "token": "not-hex/../../x" + "0" * 20}, "token"),
        ({"token": "short"}, "token"),
        ({"token": "has spaces in it and is long enough"}, "token"),
        ({"token": ""}, "token"),
        ({"locale": "not a locale"}, "locale"),
        ({"app_id": "com.example app"}, "app_id"),
    ],
)
def test_register_bad_input(client_for, alice, data, field):
    response = register(client_for(alice), **data)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"]
    assert not PushDevice.objects.exists()


def test_needs_authentication(api):
    assert api.get(URL).status_code == 401
    response = api.post(URL, {"platform": "android", "token": FCM_TOKEN}, format="json")
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"


def test_list_shows_own_devices_only_in_two_queries(client_for, alice, bob, django_assert_num_queries):
    client = client_for(alice)
    register(client)
    services.device_register(user=alice, platform="ios", token="cd" * 32)
    services.device_register(user=bob, platform="ios", token="ef" * 32)
    with django_assert_num_queries(2):  # the session (with its user), the devices
        response = client.get(URL)
    assert response.status_code == 200
    devices = response.json()
    assert sorted(d["platform"] for d in devices) == ["android", "ios"]
    assert [d["current"] for d in devices if d["platform"] == "ios"] == [False]


def test_delete_own_device(client_for, alice):
    client = client_for(alice)
    device_id = register(client).json()["id"]
    assert client.delete(f"{URL}/{device_id}").status_code == 204
    assert not PushDevice.objects.exists()
    response = client.delete(f"{URL}/{device_id}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_delete_another_users_device_is_not_found(client_for, alice, bob):
    device_id = register(client_for(alice)).json()["id"]
    response = client_for(bob).delete(f"{URL}/{device_id}")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}
    assert PushDevice.objects.filter(id=device_id).exists()


def test_revoking_a_session_disables_its_devices(client_for, alice):
    phone, tablet = client_for(alice), client_for(alice)
    register(phone)
    register(tablet, platform="ios", token="cd" * 32)
    assert push.devices_disable_for_session(session_id=phone.tokens["session_id"]) == 1
    disabled = PushDevice.objects.get(platform="android")
    assert disabled.disabled_at is not None and disabled.disabled_reason == "session_revoked"
    assert PushDevice.objects.get(platform="ios").disabled_at is None
    assert push.devices_disable_for_session(session_id=phone.tokens["session_id"]) == 0


def test_too_many_devices_disables_the_least_recently_seen(alice, settings):
    settings.PUSH_DEVICES_PER_USER_MAX = 2
    old, _ = services.device_register(user=alice, platform="ios", token="01" * 32)
    PushDevice.objects.filter(id=old.id).update(last_seen_at=timezone.now() - timedelta(days=3))
    services.device_register(user=alice, platform="ios", token="02" * 32)
    services.device_register(user=alice, platform="ios", token="03" * 32)
    old.refresh_from_db()
    assert old.disabled_reason == "too_many_devices"
    assert PushDevice.objects.filter(user=alice, disabled_at__isnull=True).count() == 2


def test_purge_deletes_long_disabled_devices(alice):
    long_ago, _ = services.device_register(user=alice, platform="ios", token="01" * 32)
    recently, _ = services.device_register(user=alice, platform="ios", token="02" * 32)
    active, _ = services.device_register(user=alice, platform="ios", token="03" * 32)
    PushDevice.objects.filter(id=long_ago.id).update(disabled_at=timezone.now() - timedelta(days=31))
    PushDevice.objects.filter(id=recently.id).update(disabled_at=timezone.now() - timedelta(days=1))
    from superapp.core.push.tasks import push_purge_disabled_devices

    assert push_purge_disabled_devices.apply().get() == 1
    assert set(PushDevice.objects.values_list("id", flat=True)) == {recently.id, active.id}


def test_deleting_a_user_deletes_their_devices(alice):
    services.device_register(user=alice, platform="ios", token="01" * 32)
    alice.delete()
    assert not PushDevice.objects.exists()
