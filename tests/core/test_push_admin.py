"""The push device admin: lists without full tokens, read-only pages, the disable action."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from superapp.core.push import services
from superapp.core.push.models import PushDevice

pytestmark = pytest.mark.django_db

URL = "/admin/core/pushdevice/"
TOKEN = "ab" * 32


@pytest.fixture
def staff():
    client = Client()
    client.force_login(User.objects.create_superuser("root", "pw-root-123", email="root@example.com"))
    return client


@pytest.fixture
def device(alice):
    return services.device_register(user=alice, platform="ios", token=TOKEN)[0]


@pytest.mark.parametrize(
    "query", ["", "?q=alice", "?q=@alice", "?platform__exact=ios", "?disabled_at__isnull=True"]
)
def test_changelist_loads_without_full_tokens(staff, device, query):
    response = staff.get(URL + query)
    assert response.status_code == 200
    page = response.content.decode()
    assert f"{TOKEN[:6]}…{TOKEN[-4:]}" in page
    assert TOKEN not in page


def test_change_page_is_read_only_and_hides_the_token(staff, device):
    response = staff.get(f"{URL}{device.id}/change/")
    assert response.status_code == 200
    assert TOKEN not in response.content.decode()
    assert staff.get(URL + "add/").status_code == 403


def test_disable_action(staff, device):
    response = staff.post(URL, {"action": "disable_devices", "_selected_action": [device.id]}, follow=True)
    assert response.status_code == 200
    device.refresh_from_db()
    assert device.disabled_at is not None and device.disabled_reason == "admin"


def test_non_staff_are_kept_out(alice, device):
    client = Client()
    client.force_login(alice)
    assert client.get(URL).status_code == 302
    assert PushDevice.objects.filter(disabled_at__isnull=True).count() == 1
