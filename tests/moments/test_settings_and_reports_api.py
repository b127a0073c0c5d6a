"""Who-sees-what settings and reports over REST: success, bad input, someone else's object."""

from __future__ import annotations

import pytest

from moments.models import FriendSetting, Report
from superapp.core.events import events_since
from tests.conftest import befriend
from tests.core.test_errors import assert_error

from .conftest import publish

pytestmark = pytest.mark.django_db

SETTINGS = "/api/v1/moments/settings"
FRIEND_SETTINGS = "/api/v1/moments/friend-settings"


def last_event(user):
    return events_since(user_id=user.pk, since=0, limit=500)["events"][-1]


def test_settings_default_and_update(client_for, alice):
    client = client_for(alice)
    assert client.get(SETTINGS).json() == {"visible_days": 0}
    response = client.patch(SETTINGS, {"visible_days": 30}, format="json")
    assert response.json() == {"visible_days": 30}
    assert client.get(SETTINGS).json() == {"visible_days": 30}
    assert last_event(alice) == {
        "type": "moments.settings.updated",
        "cursor": 1,
        "data": {"visible_days": 30},
    }


@pytest.mark.parametrize("body", [{}, {"visible_days": 7}, {"visible_days": "all"}])
def test_settings_bad_input(client_for, alice, body):
    error = assert_error(client_for(alice).patch(SETTINGS, body, format="json"), 400)
    assert "visible_days" in error["fields"]


def test_friend_setting_get_update_and_list(client_for, alice, bob, carol):
    befriend(alice, bob)
    befriend(alice, carol)
    client = client_for(alice)
    assert client.get(f"{FRIEND_SETTINGS}/{bob.pk}").json() == {
        "user_id": bob.pk, "hide_my_posts": False, "hide_their_posts": False,
    }  # fmt: skip
    response = client.patch(f"{FRIEND_SETTINGS}/{bob.pk}", {"hide_my_posts": True}, format="json")
    assert response.json() == {"user_id": bob.pk, "hide_my_posts": True, "hide_their_posts": False}
    client.patch(f"{FRIEND_SETTINGS}/{bob.pk}", {"hide_their_posts": True}, format="json")
    client.patch(f"{FRIEND_SETTINGS}/{carol.pk}", {"hide_their_posts": False}, format="json")
    assert client.get(FRIEND_SETTINGS).json() == [
        {"user_id": bob.pk, "hide_my_posts": True, "hide_their_posts": True}
    ]
    assert last_event(alice)["type"] == "moments.friend_settings.updated"
    # Settings are one's own: bob sees none of alice's choices.
    assert client_for(bob).get(FRIEND_SETTINGS).json() == []
    assert client_for(bob).get(f"{FRIEND_SETTINGS}/{alice.pk}").json()["hide_my_posts"] is False


def test_friend_setting_for_a_non_contact_is_404(client_for, alice, carol):
    assert_error(client_for(alice).get(f"{FRIEND_SETTINGS}/{carol.pk}"), 404)
    assert_error(
        client_for(alice).patch(f"{FRIEND_SETTINGS}/{carol.pk}", {"hide_my_posts": True}, format="json"), 404
    )
    assert_error(
        client_for(alice).patch(f"{FRIEND_SETTINGS}/{alice.pk}", {"hide_my_posts": True}, format="json"), 404
    )
    assert not FriendSetting.objects.exists()


def test_friend_setting_bad_input(client_for, alice, bob):
    befriend(alice, bob)
    error = assert_error(
        client_for(alice).patch(f"{FRIEND_SETTINGS}/{bob.pk}", {"hide_my_posts": "maybe"}, format="json"), 400
    )
    assert "hide_my_posts" in error["fields"]


def test_report_once_then_update(client_for, alice, bob):
    befriend(alice, bob)
    post = publish(alice)
    client = client_for(bob)
    url = f"/api/v1/moments/posts/{post.pk}/report"
    response = client.post(url, {"reason": "spam", "note": "ads"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "open" and response.json()["reason"] == "spam"
    again = client.post(url, {"reason": "fraud"}, format="json")
    assert again.status_code == 200 and again.json()["reason"] == "fraud"
    assert Report.objects.count() == 1


@pytest.mark.parametrize("body", [{}, {"reason": "boring"}, {"reason": "spam", "note": "x" * 501}])
def test_report_bad_input(client_for, alice, bob, body):
    befriend(alice, bob)
    post = publish(alice)
    assert_error(client_for(bob).post(f"/api/v1/moments/posts/{post.pk}/report", body, format="json"), 400)


def test_report_own_or_invisible_post(client_for, alice, carol):
    post = publish(alice)
    url = f"/api/v1/moments/posts/{post.pk}/report"
    assert_error(client_for(alice).post(url, {"reason": "spam"}, format="json"), 400, "cannot_report_own")
    assert_error(client_for(carol).post(url, {"reason": "spam"}, format="json"), 404)
