"""GET/PATCH /api/v1/me: public profile, handle (once a year), privacy; what friends hear of it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import events as account_events
from accounts.models import Block, User
from superapp.core.events import events_since
from tests.conftest import befriend
from tests.core.test_errors import assert_error

pytestmark = pytest.mark.django_db

PUBLIC_KEYS = {"id", "handle", "display_name", "avatar_url", "avatar_thumb_url", "region", "bio"}
ME_KEYS = PUBLIC_KEYS | {
    "phone",
    "email",
    "findable_by_phone",
    "findable_by_handle",
    "friend_requests_need_approval",
    "handle_changed_at",
}


def stream(user) -> list[dict]:
    return events_since(user_id=user.pk, since=0, limit=500)["events"]


def patch_me(client, **body):
    return client.patch("/api/v1/me", body, format="json")


def test_get_me(client_for, alice):
    response = client_for(alice).get("/api/v1/me")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == ME_KEYS
    assert body["id"] == alice.pk
    assert body["handle"] == "alice"
    assert body["email"] == "alice@example.com"
    assert (
        body["findable_by_phone"]
        is body["findable_by_handle"]
        is body["friend_requests_need_approval"]
        is True
    )
    assert body["handle_changed_at"] is None


def test_me_requires_authentication(api):
    assert_error(api.get("/api/v1/me"), 401, "not_authenticated")
    assert_error(api.patch("/api/v1/me", {"bio": "x"}, format="json"), 401, "not_authenticated")


def test_patch_public_fields(client_for, alice):
    response = patch_me(client_for(alice), display_name="  Alice L. ", region="Shanghai", bio="Climber")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["display_name"], body["region"], body["bio"]) == ("Alice L.", "Shanghai", "Climber")
    alice.refresh_from_db()
    assert (alice.display_name, alice.region, alice.bio) == ("Alice L.", "Shanghai", "Climber")
    # Region and bio may be cleared.
    body = patch_me(client_for(alice), region="", bio="").json()
    assert body["region"] == body["bio"] == ""


def test_patch_privacy(client_for, alice):
    response = patch_me(
        client_for(alice),
        findable_by_phone=False,
        findable_by_handle=False,
        friend_requests_need_approval=False,
    )
    assert response.status_code == 200
    alice.refresh_from_db()
    assert (
        not alice.findable_by_phone
        and not alice.findable_by_handle
        and not alice.friend_requests_need_approval
    )


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"display_name": ""}, {"display_name"}),
        ({"display_name": "   "}, {"display_name"}),
        ({"display_name": "x" * 65}, {"display_name"}),
        ({"display_name": None}, {"display_name"}),
        ({"region": "x" * 65}, {"region"}),
        ({"bio": "x" * 201}, {"bio"}),
        ({"bio": "x" * 201, "region": "x" * 65}, {"bio", "region"}),
        ({"findable_by_phone": "maybe"}, {"findable_by_phone"}),
        ({"handle": "ab"}, {"handle"}),
        ({"handle": "1abc"}, {"handle"}),
        ({"handle": "has space"}, {"handle"}),
        ({"handle": "x" * 21}, {"handle"}),
    ],
)
def test_patch_me_bad_input(client_for, alice, body, fields):
    error = assert_error(patch_me(client_for(alice), **body), 400, "invalid")
    assert set(error["fields"]) == fields
    before = User.objects.get(pk=alice.pk)
    assert (before.handle, before.display_name, before.bio, before.region) == ("alice", "Alice", "", "")
    assert stream(alice) == []


def test_patch_me_changes_only_the_caller(client_for, alice, bob):
    """/me has no id: the only user it can change is the caller; protected fields are ignored."""
    response = patch_me(
        client_for(alice), bio="mine", id=bob.pk, phone="+8613800138000", email="x@y.z", is_staff=True
    )
    assert response.status_code == 200
    bob.refresh_from_db()
    alice.refresh_from_db()
    assert bob.bio == "" and alice.bio == "mine"
    assert alice.phone is None and alice.email == "alice@example.com" and not alice.is_staff


def test_change_handle(client_for, alice):
    response = patch_me(client_for(alice), handle="  Alice_2 ")
    assert response.status_code == 200, response.json()
    assert response.json()["handle"] == "alice_2"
    alice.refresh_from_db()
    assert alice.handle == "alice_2"
    assert timezone.now() - alice.handle_changed_at < timedelta(minutes=1)
    assert response.json()["handle_changed_at"] == alice.handle_changed_at.isoformat()


def test_same_handle_is_not_a_change(client_for, alice):
    assert patch_me(client_for(alice), handle="ALICE").status_code == 200
    alice.refresh_from_db()
    assert alice.handle_changed_at is None
    assert stream(alice) == []


def test_handle_changes_at_most_once_a_year(client_for, alice):
    User.objects.filter(pk=alice.pk).update(handle_changed_at=timezone.now() - timedelta(days=364))
    error = assert_error(patch_me(client_for(alice), handle="alice_new"), 409, "handle_change_too_soon")
    assert "once a year" in error["message"]
    alice.refresh_from_db()
    assert alice.handle == "alice"
    # Nothing else in the same request was applied either.
    assert_error(
        patch_me(client_for(alice), handle="alice_new", bio="new bio"), 409, "handle_change_too_soon"
    )
    alice.refresh_from_db()
    assert alice.bio == ""

    User.objects.filter(pk=alice.pk).update(handle_changed_at=timezone.now() - timedelta(days=366))
    assert patch_me(client_for(alice), handle="alice_new").status_code == 200
    # ...and right after that change, the next one is too soon.
    assert_error(patch_me(client_for(alice), handle="alice_newer"), 409, "handle_change_too_soon")


def test_handle_taken_is_409(client_for, alice, bob):
    assert_error(patch_me(client_for(alice), handle="BOB"), 409, "handle_taken")
    alice.refresh_from_db()
    assert alice.handle == "alice" and alice.handle_changed_at is None


# --- events ------------------------------------------------------------------------------------


def test_profile_change_reaches_friends_after_commit(
    client_for, alice, bob, carol, make_user, django_capture_on_commit_callbacks
):
    befriend(alice, bob)
    befriend(alice, carol)
    Block.objects.create(blocker=carol, blocked=alice)  # a blocked pair hears nothing
    stranger = make_user()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = patch_me(client_for(alice), display_name="Ally", bio="hi")
    assert response.status_code == 200
    # The event doorbell, and the after-commit bump of Moments' feed cache (its profile hook).
    assert len(callbacks) == 2 and [c.__module__ for c in callbacks].count("moments.feed_cache") == 1

    (event,) = stream(bob)
    assert event["type"] == account_events.PROFILE_UPDATED
    assert set(event["data"]) == {"user"}
    assert event["data"]["user"] == {
        "id": alice.pk,
        "handle": "alice",
        "display_name": "Ally",
        "avatar_url": None,
        "avatar_thumb_url": None,
        "region": "",
        "bio": "hi",
    }
    assert stream(carol) == [] and stream(stranger) == []

    (mine,) = stream(alice)
    assert mine["type"] == account_events.ME_UPDATED
    assert set(mine["data"]) == {"me"}
    assert set(mine["data"]["me"]) == ME_KEYS
    assert mine["data"]["me"]["display_name"] == "Ally"
    assert mine["data"]["me"]["email"] == "alice@example.com"


def test_profile_update_event_has_no_private_fields(client_for, alice, bob):
    befriend(alice, bob)
    User.objects.filter(pk=alice.pk).update(phone="+8613800138000")
    patch_me(client_for(alice), handle="ally")
    (event,) = stream(bob)
    assert set(event["data"]["user"]) == PUBLIC_KEYS
    assert event["data"]["user"]["handle"] == "ally"


def test_privacy_change_tells_only_my_devices(client_for, alice, bob):
    befriend(alice, bob)
    patch_me(client_for(alice), findable_by_phone=False)
    assert stream(bob) == []
    (event,) = stream(alice)
    assert event["type"] == account_events.ME_UPDATED
    assert event["data"]["me"]["findable_by_phone"] is False


def test_no_change_publishes_nothing(client_for, alice, bob):
    befriend(alice, bob)
    assert patch_me(client_for(alice), display_name="Alice", bio="").status_code == 200
    assert stream(alice) == [] and stream(bob) == []


def test_failed_update_publishes_nothing(client_for, alice, bob, django_capture_on_commit_callbacks):
    befriend(alice, bob)
    with django_capture_on_commit_callbacks() as callbacks:
        assert_error(patch_me(client_for(alice), handle="bob", bio="x"), 409, "handle_taken")
    assert callbacks == []
    assert stream(alice) == [] and stream(bob) == []


def test_sync_endpoint_returns_profile_events(client_for, alice, bob):
    befriend(alice, bob)
    patch_me(client_for(alice), region="Beijing")
    page = client_for(bob).get("/api/v1/sync", {"since": 0}).json()
    assert [e["type"] for e in page["events"]] == [account_events.PROFILE_UPDATED]
    assert page["events"][0]["data"]["user"]["region"] == "Beijing"
    assert page["cursor"] == page["latest"] == 1
