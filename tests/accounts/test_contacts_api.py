"""Contacts REST API: search, friend requests, friends (remark, tags), tags, blocks, friend QR code.

Every endpoint: success, bad input, and another user's object (404/403). List endpoints are
pinned to a query count that does not grow with the number of rows.
"""

from __future__ import annotations

import io
import time
from datetime import timedelta
from unittest import mock

import pytest
from PIL import Image

from accounts import selectors, services
from accounts.models import Block, ContactTag, FriendRequest, Friendship
from accounts.services import contacts as contact_services
from superapp.core.events import events_since
from tests.conftest import befriend
from tests.core.test_errors import assert_error

pytestmark = pytest.mark.django_db

PHONE = "+8613800138000"


def event_types(user) -> list[str]:
    return [e["type"] for e in events_since(user_id=user.pk, since=0, limit=500)["events"]]


def send(client, to_user, **body):
    """Send a request as a client would after finding ``to_user`` (by search, unless told)."""
    if body.get("source", "search") == "search" and "search_token" not in body:
        body["search_token"] = services.friend_search_token(viewer=client.user, target=to_user)
    return client.post("/api/v1/contacts/requests", {"to_user_id": to_user.pk, **body}, format="json")


def is_friend_row(a, b) -> bool:
    return Friendship.objects.filter(user=a, friend=b).exists()


# --- search ------------------------------------------------------------------------------------


def test_search_by_exact_handle_and_by_phone(client_for, alice, make_user):
    dave = make_user(handle="dave", phone=PHONE)
    client = client_for(alice)

    response = client.get("/api/v1/contacts/search", {"q": "  DAVE "})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body.pop("add_token")
    assert body == {
        "user": {
            "id": dave.pk,
            "handle": "dave",
            "display_name": "Dave",
            "avatar_url": None,
            "avatar_thumb_url": None,
            "region": "",
            "bio": "",
        },
        "is_friend": False,
    }
    response = client.get("/api/v1/contacts/search", {"q": "+86 138 0013 8000"})
    assert response.json()["user"]["id"] == dave.pk
    # Exact only: a prefix finds nothing.
    assert_error(client.get("/api/v1/contacts/search", {"q": "dav"}), 404, "user_not_found")


def test_search_shows_friendship(client_for, alice, bob):
    befriend(alice, bob)
    assert client_for(alice).get("/api/v1/contacts/search", {"q": "bob"}).json()["is_friend"] is True


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "x" * 65}])
def test_search_bad_input(client_for, alice, params):
    error = assert_error(client_for(alice).get("/api/v1/contacts/search", params), 400, "invalid")
    assert "q" in error["fields"]


@pytest.mark.parametrize("q", ["bob@example.com", "!!", "12"])
def test_search_by_email_or_garbage_finds_nobody(client_for, alice, bob, q):
    assert_error(client_for(alice).get("/api/v1/contacts/search", {"q": q}), 404, "user_not_found")


def test_search_respects_findable_by_handle(client_for, alice, make_user):
    make_user(handle="dave", phone=PHONE, findable_by_handle=False)
    client = client_for(alice)
    assert_error(client.get("/api/v1/contacts/search", {"q": "dave"}), 404, "user_not_found")
    assert client.get("/api/v1/contacts/search", {"q": PHONE}).status_code == 200


def test_search_respects_findable_by_phone(client_for, alice, make_user):
    make_user(handle="dave", phone=PHONE, findable_by_phone=False)
    client = client_for(alice)
    assert_error(client.get("/api/v1/contacts/search", {"q": PHONE}), 404, "user_not_found")
    assert client.get("/api/v1/contacts/search", {"q": "dave"}).status_code == 200


def test_friends_still_find_each_other_when_not_findable(client_for, alice, make_user):
    dave = make_user(handle="dave", phone=PHONE, findable_by_handle=False, findable_by_phone=False)
    befriend(alice, dave)
    client = client_for(alice)
    assert client.get("/api/v1/contacts/search", {"q": "dave"}).json()["is_friend"] is True
    assert client.get("/api/v1/contacts/search", {"q": PHONE}).status_code == 200


def test_search_hidden_from_someone_the_target_blocked(client_for, alice, bob):
    Block.objects.create(blocker=bob, blocked=alice)
    assert_error(client_for(alice).get("/api/v1/contacts/search", {"q": "bob"}), 404, "user_not_found")
    # The blocker can still find the one they blocked (to unblock them).
    assert client_for(bob).get("/api/v1/contacts/search", {"q": "alice"}).status_code == 200


def test_search_skips_unverified_and_inactive_users(client_for, alice, make_user):
    make_user(handle="dave", is_verified=False)
    make_user(handle="erin", is_active=False)
    client = client_for(alice)
    assert_error(client.get("/api/v1/contacts/search", {"q": "dave"}), 404)
    assert_error(client.get("/api/v1/contacts/search", {"q": "erin"}), 404)


def test_search_requires_authentication(api):
    assert_error(api.get("/api/v1/contacts/search", {"q": "bob"}), 401, "not_authenticated")


# --- friend requests ---------------------------------------------------------------------------


def test_send_request_with_a_note(client_for, alice, bob, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = send(client_for(alice), bob, note="  Hi, it's Alice from the gym  ")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["became_friends"] is False
    assert body["request"]["note"] == "Hi, it's Alice from the gym"
    assert body["request"]["status"] == "pending"
    assert body["request"]["from_user"]["id"] == alice.pk
    assert body["request"]["to_user"]["id"] == bob.pk
    assert len(callbacks) == 1  # the doorbell, after commit
    assert event_types(bob) == ["contact.request.received"]
    assert event_types(alice) == ["contact.request.sent"]
    assert not is_friend_row(alice, bob)

    incoming = client_for(bob).get("/api/v1/contacts/requests").json()["results"]
    assert [r["id"] for r in incoming] == [body["request"]["id"]]
    assert incoming[0]["note"] == "Hi, it's Alice from the gym"
    outgoing = client_for(alice).get("/api/v1/contacts/requests", {"direction": "outgoing"}).json()["results"]
    assert [r["id"] for r in outgoing] == [body["request"]["id"]]
    assert client_for(alice).get("/api/v1/contacts/requests").json()["results"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to_user_id": None}, "to_user_id"),
        ({"to_user_id": "bob"}, "to_user_id"),
        ({"note": "x" * 101}, "note"),
        ({"source": "carrier_pigeon"}, "source"),
    ],
)
def test_send_request_bad_input(client_for, alice, bob, body, field):
    body = {k: v for k, v in {"to_user_id": bob.pk, **body}.items() if v is not None}
    response = client_for(alice).post("/api/v1/contacts/requests", body, format="json")
    error = assert_error(response, 400, "invalid")
    assert field in error["fields"]
    assert not FriendRequest.objects.exists()


def test_send_request_to_self_or_nobody(client_for, alice):
    client = client_for(alice)
    assert_error(send(client, alice), 400, "cannot_add_self")
    response = client.post("/api/v1/contacts/requests", {"to_user_id": 999_999}, format="json")
    assert_error(response, 404, "not_found")


def test_send_request_to_unverified_user_is_404(client_for, alice, make_user):
    dave = make_user(handle="dave", is_verified=False)
    assert_error(send(client_for(alice), dave), 404)


def test_request_auto_accepted_when_target_needs_no_approval(client_for, alice, make_user):
    dave = make_user(handle="dave", friend_requests_need_approval=False)
    response = send(client_for(alice), dave, note="hello")
    assert response.status_code == 201
    assert response.json()["became_friends"] is True
    assert response.json()["request"]["status"] == "accepted"
    assert is_friend_row(alice, dave) and is_friend_row(dave, alice)
    assert selectors.are_friends(user_a=alice.pk, user_b=dave.pk)
    assert "contact.friend.added" in event_types(alice)
    assert "contact.request.accepted" in event_types(alice)
    assert event_types(dave) == ["contact.friend.added"]


def test_mutual_requests_become_friends(client_for, alice, bob):
    first = send(client_for(alice), bob).json()["request"]
    response = send(client_for(bob), alice)
    assert response.status_code == 201
    assert response.json()["became_friends"] is True
    assert response.json()["request"]["id"] == first["id"]
    assert is_friend_row(alice, bob) and is_friend_row(bob, alice)
    assert not FriendRequest.objects.filter(status="pending").exists()


def test_duplicate_request_refreshes_the_pending_one(client_for, alice, bob):
    client = client_for(alice)
    first = send(client, bob, note="first").json()["request"]
    response = send(client, bob, note="second")
    assert response.status_code == 201
    assert response.json()["request"]["id"] == first["id"]
    assert FriendRequest.objects.filter(from_user=alice, to_user=bob).count() == 1
    assert FriendRequest.objects.get().note == "second"


def test_request_to_someone_who_blocked_you_is_403(client_for, alice, bob):
    Block.objects.create(blocker=bob, blocked=alice)
    assert_error(send(client_for(alice), bob), 403, "cannot_add")
    assert not FriendRequest.objects.exists()


def test_request_to_someone_you_blocked_is_409(client_for, alice, bob):
    Block.objects.create(blocker=alice, blocked=bob)
    assert_error(send(client_for(alice), bob), 409, "blocked_by_you")


def test_request_when_already_friends_is_409(client_for, alice, bob):
    befriend(alice, bob)
    assert_error(send(client_for(alice), bob), 409, "already_friends")


def test_request_by_search_to_unfindable_user_is_403(client_for, alice, make_user):
    dave = make_user(handle="dave", findable_by_handle=False, findable_by_phone=False)
    assert_error(send(client_for(alice), dave), 403, "cannot_add")


def test_accept_makes_friends_on_both_sides(client_for, alice, bob):
    request_id = send(client_for(alice), bob).json()["request"]["id"]
    response = client_for(bob).post(
        f"/api/v1/contacts/requests/{request_id}/accept", {"remark": "Alice (gym)"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "accepted"
    assert Friendship.objects.get(user=bob, friend=alice).remark == "Alice (gym)"
    assert Friendship.objects.get(user=alice, friend=bob).remark == ""
    assert selectors.are_friends(user_a=alice.pk, user_b=bob.pk)
    assert event_types(alice)[-2:] == ["contact.request.accepted", "contact.friend.added"]
    assert event_types(bob)[-1] == "contact.friend.added"
    # A second answer is refused.
    assert_error(
        client_for(bob).post(f"/api/v1/contacts/requests/{request_id}/accept"), 409, "request_closed"
    )
    assert_error(
        client_for(bob).post(f"/api/v1/contacts/requests/{request_id}/decline"), 409, "request_closed"
    )


def test_accept_bad_input(client_for, alice, bob):
    request_id = send(client_for(alice), bob).json()["request"]["id"]
    response = client_for(bob).post(
        f"/api/v1/contacts/requests/{request_id}/accept", {"remark": "x" * 65}, format="json"
    )
    assert "remark" in assert_error(response, 400, "invalid")["fields"]
    assert FriendRequest.objects.get().status == "pending"


def test_accept_or_decline_someone_elses_request_is_404(client_for, alice, bob, carol):
    request_id = send(client_for(alice), bob).json()["request"]["id"]
    for client in (client_for(carol), client_for(alice)):  # a stranger, and the sender themself
        assert_error(client.post(f"/api/v1/contacts/requests/{request_id}/accept"), 404, "not_found")
        assert_error(client.post(f"/api/v1/contacts/requests/{request_id}/decline"), 404, "not_found")
    assert_error(client_for(bob).post("/api/v1/contacts/requests/999999/accept"), 404)
    assert FriendRequest.objects.get().status == "pending"
    assert not Friendship.objects.exists()


def test_decline(client_for, alice, bob):
    request_id = send(client_for(alice), bob).json()["request"]["id"]
    response = client_for(bob).post(f"/api/v1/contacts/requests/{request_id}/decline")
    assert response.status_code == 200
    assert response.json()["status"] == "declined"
    assert not Friendship.objects.exists()
    # Only the decliner's devices hear of it; the sender is not told.
    assert event_types(bob)[-1] == "contact.request.declined"
    assert "contact.request.declined" not in event_types(alice)
    # The sender may ask again later: a new pending request.
    again = send(client_for(alice), bob).json()["request"]
    assert again["id"] != request_id and again["status"] == "pending"


def test_request_list_filters_and_bad_input(client_for, alice, bob, carol):
    send(client_for(alice), carol)
    send(client_for(bob), carol)
    declined_id = FriendRequest.objects.get(from_user=bob).pk
    client_for(carol).post(f"/api/v1/contacts/requests/{declined_id}/decline")
    client = client_for(carol)
    pending = client.get("/api/v1/contacts/requests", {"status": "pending"}).json()["results"]
    assert [r["from_user"]["handle"] for r in pending] == ["alice"]
    declined = client.get("/api/v1/contacts/requests", {"status": "declined"}).json()["results"]
    assert [r["id"] for r in declined] == [declined_id]
    assert (
        "direction"
        in assert_error(client.get("/api/v1/contacts/requests", {"direction": "sideways"}), 400)["fields"]
    )
    assert (
        "status" in assert_error(client.get("/api/v1/contacts/requests", {"status": "maybe"}), 400)["fields"]
    )


def test_requests_from_a_blocked_user_are_not_listed(client_for, alice, bob, carol):
    send(client_for(alice), carol)
    send(client_for(bob), carol)
    client_for(carol).post("/api/v1/contacts/blocks", {"user_id": alice.pk}, format="json")
    incoming = client_for(carol).get("/api/v1/contacts/requests").json()["results"]
    assert [r["from_user"]["handle"] for r in incoming] == ["bob"]


# --- friends -----------------------------------------------------------------------------------


def test_friend_list_and_detail(client_for, alice, bob, carol):
    befriend(alice, bob)
    befriend(alice, carol)
    befriend(bob, carol)  # not alice's business
    tag = ContactTag.objects.create(owner=alice, name="Family")
    tag.members.add(bob)
    # carol's tag on alice must not leak into alice's view.
    ContactTag.objects.create(owner=carol, name="Work").members.add(alice)
    Friendship.objects.filter(user=alice, friend=bob).update(remark="Bobby")
    client = client_for(alice)

    response = client.get("/api/v1/contacts/friends")
    assert response.status_code == 200, response.content
    results = {f["user"]["handle"]: f for f in response.json()["results"]}
    assert set(results) == {"bob", "carol"}
    assert results["bob"]["remark"] == "Bobby"
    assert results["bob"]["tags"] == [{"id": tag.pk, "name": "Family"}]
    assert results["carol"]["tags"] == []

    detail = client.get(f"/api/v1/contacts/friends/{bob.pk}")
    assert detail.status_code == 200
    assert detail.json()["remark"] == "Bobby"
    assert detail.json()["tags"] == [{"id": tag.pk, "name": "Family"}]
    assert client_for(carol).get(f"/api/v1/contacts/friends/{alice.pk}").json()["tags"] == [
        {"id": ContactTag.objects.get(owner=carol).pk, "name": "Work"}
    ]


def test_friend_detail_of_a_non_friend_is_404(client_for, alice, bob, carol):
    befriend(bob, carol)
    assert_error(client_for(alice).get(f"/api/v1/contacts/friends/{bob.pk}"), 404)
    assert_error(
        client_for(alice).patch(f"/api/v1/contacts/friends/{bob.pk}", {"remark": "x"}, format="json"), 404
    )
    assert_error(client_for(alice).delete(f"/api/v1/contacts/friends/{bob.pk}"), 404)
    assert Friendship.objects.count() == 2


def test_set_remark_and_tags(client_for, alice, bob):
    befriend(alice, bob)
    family = ContactTag.objects.create(owner=alice, name="Family")
    gym = ContactTag.objects.create(owner=alice, name="Gym")
    client = client_for(alice)

    response = client.patch(
        f"/api/v1/contacts/friends/{bob.pk}",
        {"remark": " Bobby ", "tag_ids": [family.pk, gym.pk]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["remark"] == "Bobby"
    assert sorted(t["name"] for t in response.json()["tags"]) == ["Family", "Gym"]
    assert event_types(alice)[-2:] == ["contact.friend.updated", "contact.tags.updated"]

    response = client.patch(f"/api/v1/contacts/friends/{bob.pk}", {"tag_ids": [gym.pk]}, format="json")
    assert response.json()["remark"] == "Bobby"  # untouched
    assert [t["name"] for t in response.json()["tags"]] == ["Gym"]
    assert list(family.members.all()) == []
    # bob's own entry for alice is his business.
    assert Friendship.objects.get(user=bob, friend=alice).remark == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [({"remark": "x" * 65}, "remark"), ({"tag_ids": [999_999]}, "tag_ids"), ({"tag_ids": ["a"]}, "tag_ids")],
)
def test_set_remark_and_tags_bad_input(client_for, alice, bob, body, field):
    befriend(alice, bob)
    response = client_for(alice).patch(f"/api/v1/contacts/friends/{bob.pk}", body, format="json")
    fields = assert_error(response, 400, "invalid")["fields"]
    assert any(key.split(".")[0] == field for key in fields), fields


def test_cannot_put_a_friend_in_someone_elses_tag(client_for, alice, bob, carol):
    befriend(alice, bob)
    carols = ContactTag.objects.create(owner=carol, name="Secret")
    response = client_for(alice).patch(
        f"/api/v1/contacts/friends/{bob.pk}", {"tag_ids": [carols.pk]}, format="json"
    )
    assert "tag_ids" in assert_error(response, 400)["fields"]
    assert list(carols.members.all()) == []


def test_delete_friend_removes_both_sides_and_tags(client_for, alice, bob, carol):
    befriend(alice, bob)
    befriend(alice, carol)
    alices_tag = ContactTag.objects.create(owner=alice, name="Family")
    alices_tag.members.add(bob, carol)
    bobs_tag = ContactTag.objects.create(owner=bob, name="School")
    bobs_tag.members.add(alice)

    response = client_for(alice).delete(f"/api/v1/contacts/friends/{bob.pk}")
    assert response.status_code == 204
    assert not is_friend_row(alice, bob) and not is_friend_row(bob, alice)
    assert list(alices_tag.members.all()) == [carol]
    assert list(bobs_tag.members.all()) == []
    assert is_friend_row(alice, carol)
    assert event_types(alice)[-1] == "contact.friend.removed"
    assert event_types(bob)[-1] == "contact.friend.removed"
    assert_error(client_for(alice).delete(f"/api/v1/contacts/friends/{bob.pk}"), 404)


# --- tags --------------------------------------------------------------------------------------


def test_tag_create_rename_members_delete(client_for, alice, bob, carol):
    befriend(alice, bob)
    befriend(alice, carol)
    client = client_for(alice)

    response = client.post(
        "/api/v1/contacts/tags", {"name": " Family ", "member_ids": [bob.pk]}, format="json"
    )
    assert response.status_code == 201, response.json()
    tag = response.json()
    assert tag["name"] == "Family" and tag["member_ids"] == [bob.pk]
    assert event_types(alice)[-1] == "contact.tags.updated"

    response = client.patch(f"/api/v1/contacts/tags/{tag['id']}", {"name": "Kin"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"id": tag["id"], "name": "Kin", "member_ids": [bob.pk]}

    response = client.patch(
        f"/api/v1/contacts/tags/{tag['id']}", {"member_ids": [carol.pk, bob.pk]}, format="json"
    )
    assert response.json()["member_ids"] == sorted([bob.pk, carol.pk])
    response = client.patch(f"/api/v1/contacts/tags/{tag['id']}", {"member_ids": []}, format="json")
    assert response.json()["member_ids"] == []

    assert client.get("/api/v1/contacts/tags").json() == [{"id": tag["id"], "name": "Kin", "member_ids": []}]
    assert client.delete(f"/api/v1/contacts/tags/{tag['id']}").status_code == 204
    assert not ContactTag.objects.exists()
    assert_error(client.delete(f"/api/v1/contacts/tags/{tag['id']}"), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 33}, "name"),
        ({"name": "Ok", "member_ids": "1"}, "member_ids"),
    ],
)
def test_tag_create_bad_input(client_for, alice, body, field):
    assert (
        field
        in assert_error(client_for(alice).post("/api/v1/contacts/tags", body, format="json"), 400)["fields"]
    )
    assert not ContactTag.objects.exists()


def test_tag_members_must_be_friends(client_for, alice, bob, carol):
    befriend(alice, bob)
    client = client_for(alice)
    response = client.post(
        "/api/v1/contacts/tags", {"name": "Mixed", "member_ids": [bob.pk, carol.pk]}, format="json"
    )
    assert "member_ids" in assert_error(response, 400, "invalid")["fields"]
    assert not ContactTag.objects.exists()  # the whole create rolled back
    tag = ContactTag.objects.create(owner=alice, name="Ok")
    response = client.patch(f"/api/v1/contacts/tags/{tag.pk}", {"member_ids": [carol.pk]}, format="json")
    assert "member_ids" in assert_error(response, 400)["fields"]


def test_tag_name_unique_per_owner(client_for, alice, bob):
    ContactTag.objects.create(owner=alice, name="Family")
    other = ContactTag.objects.create(owner=alice, name="Gym")
    client = client_for(alice)
    assert_error(client.post("/api/v1/contacts/tags", {"name": "Family"}, format="json"), 409, "tag_exists")
    assert_error(
        client.patch(f"/api/v1/contacts/tags/{other.pk}", {"name": "Family"}, format="json"),
        409,
        "tag_exists",
    )
    # Another owner may use the same name.
    assert client_for(bob).post("/api/v1/contacts/tags", {"name": "Family"}, format="json").status_code == 201


def test_someone_elses_tag_is_404(client_for, alice, bob):
    befriend(alice, bob)
    tag = ContactTag.objects.create(owner=bob, name="Bob's")
    client = client_for(alice)
    assert_error(client.patch(f"/api/v1/contacts/tags/{tag.pk}", {"name": "Mine"}, format="json"), 404)
    assert_error(client.delete(f"/api/v1/contacts/tags/{tag.pk}"), 404)
    assert client.get("/api/v1/contacts/tags").json() == []
    tag.refresh_from_db()
    assert tag.name == "Bob's"


# --- blocks ------------------------------------------------------------------------------------


def test_block_and_unblock(client_for, alice, bob):
    befriend(alice, bob)
    client = client_for(alice)
    response = client.post("/api/v1/contacts/blocks", {"user_id": bob.pk}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["user"]["id"] == bob.pk
    assert not selectors.are_friends(user_a=alice.pk, user_b=bob.pk)
    assert not selectors.are_friends(user_a=bob.pk, user_b=alice.pk)
    assert bob.pk not in selectors.friend_ids(user_id=alice.pk)
    assert alice.pk not in selectors.friend_ids(user_id=bob.pk)
    assert selectors.is_blocked_between(user_a=bob.pk, user_b=alice.pk)
    assert [b["user"]["id"] for b in client.get("/api/v1/contacts/blocks").json()["results"]] == [bob.pk]
    # Blocking twice is harmless.
    assert client.post("/api/v1/contacts/blocks", {"user_id": bob.pk}, format="json").status_code == 201
    assert Block.objects.count() == 1
    # The blocked user cannot see the blocker's profile.
    assert_error(client_for(bob).get(f"/api/v1/users/{alice.pk}"), 404)

    assert client.delete(f"/api/v1/contacts/blocks/{bob.pk}").status_code == 204
    # The contact entry was kept: they are friends again.
    assert selectors.are_friends(user_a=alice.pk, user_b=bob.pk)
    assert event_types(alice)[-2:] == ["contact.block.added", "contact.block.removed"]
    assert_error(client.delete(f"/api/v1/contacts/blocks/{bob.pk}"), 404)


def test_blocked_user_cannot_send_requests_and_pending_ones_are_declined(client_for, alice, bob):
    send(client_for(bob), alice)
    client_for(alice).post("/api/v1/contacts/blocks", {"user_id": bob.pk}, format="json")
    assert FriendRequest.objects.get().status == "declined"
    assert_error(send(client_for(bob), alice), 403, "cannot_add")


@pytest.mark.parametrize(
    ("body", "status", "code"), [({}, 400, "invalid"), ({"user_id": 999_999}, 404, "not_found")]
)
def test_block_bad_input(client_for, alice, body, status, code):
    assert_error(client_for(alice).post("/api/v1/contacts/blocks", body, format="json"), status, code)


def test_cannot_block_self(client_for, alice):
    assert_error(
        client_for(alice).post("/api/v1/contacts/blocks", {"user_id": alice.pk}, format="json"),
        400,
        "cannot_block_self",
    )


def test_cannot_lift_someone_elses_block(client_for, alice, bob, carol):
    Block.objects.create(blocker=carol, blocked=bob)
    assert_error(client_for(alice).delete(f"/api/v1/contacts/blocks/{bob.pk}"), 404)
    assert client_for(alice).get("/api/v1/contacts/blocks").json()["results"] == []
    assert Block.objects.filter(blocker=carol, blocked=bob).exists()


# --- profiles of others ------------------------------------------------------------------------


def test_user_detail(client_for, alice, bob, carol, make_user):
    befriend(alice, bob)
    Friendship.objects.filter(user=alice, friend=bob).update(remark="Bobby")
    client = client_for(alice)
    body = client.get(f"/api/v1/users/{bob.pk}").json()
    assert body["user"]["handle"] == "bob" and body["is_friend"] is True and body["remark"] == "Bobby"
    # A stranger's profile does not exist for alice (ids are sequential: no enumeration)...
    assert_error(client.get(f"/api/v1/users/{carol.pk}"), 404)
    # ...until one of them sends the other a friend request.
    send(client_for(carol), alice)
    body = client.get(f"/api/v1/users/{carol.pk}").json()
    assert body["is_friend"] is False and body["remark"] is None
    assert client_for(carol).get(f"/api/v1/users/{alice.pk}").status_code == 200
    assert client.get(f"/api/v1/users/{alice.pk}").json()["user"]["handle"] == "alice"  # self
    assert_error(client.get("/api/v1/users/999999"), 404)
    assert_error(client.get(f"/api/v1/users/{make_user(is_verified=False).pk}"), 404)
    assert_error(client.get(f"/api/v1/users/{make_user(is_active=False).pk}"), 404)


# --- friend QR code ----------------------------------------------------------------------------


def test_friend_qr_png_is_a_real_png(client_for, alice):
    response = client_for(alice).get("/api/v1/me/friend-code.png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(response.content)) as image:
        image.verify()
    with Image.open(io.BytesIO(response.content)) as image:
        image.load()
        assert image.format == "PNG"
        assert image.width == image.height and image.width >= 100


def test_friend_code_resolves_to_add_friend_then_request_by_qr(client_for, alice, make_user):
    # dave cannot be found by search at all: only his QR code lets people add him.
    dave = make_user(handle="dave", findable_by_handle=False, findable_by_phone=False)
    code = client_for(dave).get("/api/v1/me/friend-code").json()
    assert code["url"] == f"superapp://contacts/add?code={code['code']}"
    assert code["expires_in"] == 7 * 24 * 3600
    client = client_for(alice)

    for scanned in (code["code"], code["url"]):
        response = client.post("/api/v1/contacts/resolve-qr", {"code": scanned}, format="json")
        assert response.status_code == 200, response.json()
        assert response.json()["action"] == "add_friend"
        assert response.json()["user"]["id"] == dave.pk
        assert response.json()["qr_code"] == code["code"]

    response = send(client, dave, source="qr", qr_code=code["code"], note="scanned you")
    assert response.status_code == 201, response.json()
    assert response.json()["request"]["source"] == "qr"

    client_for(dave).post(f"/api/v1/contacts/requests/{response.json()['request']['id']}/accept")
    assert Friendship.objects.get(user=alice, friend=dave).source == "qr"
    response = client.post("/api/v1/contacts/resolve-qr", {"code": code["code"]}, format="json")
    assert response.json()["action"] == "open_profile"


def test_own_friend_code_opens_own_profile(client_for, alice):
    client = client_for(alice)
    code = client.get("/api/v1/me/friend-code").json()["code"]
    assert (
        client.post("/api/v1/contacts/resolve-qr", {"code": code}, format="json").json()["action"]
        == "open_profile"
    )


def test_tampered_or_expired_friend_code_is_400(client_for, alice, bob):
    good = client_for(bob).get("/api/v1/me/friend-code").json()["code"]
    client = client_for(alice)
    tampered = good[:-3] + ("aaa" if not good.endswith("aaa") else "bbb")
    assert_error(
        client.post("/api/v1/contacts/resolve-qr", {"code": tampered}, format="json"), 400, "qr_invalid"
    )
    assert_error(
        client.post("/api/v1/contacts/resolve-qr", {"code": "hello"}, format="json"), 400, "qr_invalid"
    )
    assert (
        "code" in assert_error(client.post("/api/v1/contacts/resolve-qr", {}, format="json"), 400)["fields"]
    )

    eight_days_ago = time.time() - timedelta(days=8).total_seconds()
    with mock.patch("django.core.signing.time.time", return_value=eight_days_ago):
        expired = contact_services.friend_qr_token(user=bob)
    assert_error(
        client.post("/api/v1/contacts/resolve-qr", {"code": expired}, format="json"), 400, "qr_expired"
    )
    assert_error(send(client, bob, source="qr", qr_code=expired), 400, "qr_expired")
    assert not FriendRequest.objects.exists()


def test_qr_request_needs_a_code_naming_the_target(client_for, alice, bob, carol):
    carols_code = client_for(carol).get("/api/v1/me/friend-code").json()["code"]
    client = client_for(alice)
    assert_error(send(client, bob, source="qr", qr_code=carols_code), 400, "qr_invalid")
    assert_error(send(client, bob, source="qr"), 400, "qr_invalid")
    assert not FriendRequest.objects.exists()


def test_friend_code_of_someone_who_blocked_you_is_404(client_for, alice, bob):
    code = client_for(bob).get("/api/v1/me/friend-code").json()["code"]
    Block.objects.create(blocker=bob, blocked=alice)
    assert_error(client_for(alice).post("/api/v1/contacts/resolve-qr", {"code": code}, format="json"), 404)


# --- events over the sync endpoint -------------------------------------------------------------


def test_request_and_acceptance_reach_the_sync_stream(
    client_for, alice, bob, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        request_id = send(client_for(alice), bob, note="hi").json()["request"]["id"]
    with django_capture_on_commit_callbacks(execute=True):
        client_for(bob).post(f"/api/v1/contacts/requests/{request_id}/accept")
    page = client_for(alice).get("/api/v1/sync", {"since": 0}).json()
    assert [e["type"] for e in page["events"]] == [
        "contact.request.sent",
        "contact.request.accepted",
        "contact.friend.added",
    ]
    assert [e["cursor"] for e in page["events"]] == [1, 2, 3]
    assert page["latest"] == 3
    received = client_for(bob).get("/api/v1/sync", {"since": 0}).json()["events"][0]
    assert received["type"] == "contact.request.received"
    assert received["data"]["request"]["note"] == "hi"


# --- pagination and query counts ----------------------------------------------------------------


def test_friend_list_uses_cursor_pagination(client_for, alice, make_user):
    friends = [make_user() for _ in range(5)]
    for friend in friends:
        befriend(alice, friend)
    client = client_for(alice)
    seen: list[int] = []
    response = client.get("/api/v1/contacts/friends", {"page_size": 2})
    pages = 0
    while True:
        body = response.json()
        assert set(body) == {"next", "previous", "results"}
        assert len(body["results"]) <= 2
        seen += [f["user"]["id"] for f in body["results"]]
        pages += 1
        if not body["next"]:
            break
        assert "cursor=" in body["next"]
        response = client.get(body["next"])
    assert pages == 3
    assert sorted(seen) == sorted(f.pk for f in friends)
    assert len(seen) == len(set(seen))


def _friends(owner, make_user, n):
    people = [make_user() for _ in range(n)]
    for person in people:
        befriend(owner, person)
    return people


def _fill_friends(owner, make_user, n):
    people = _friends(owner, make_user, n)
    tag_a = ContactTag.objects.create(owner=owner, name=f"A{n}")
    tag_b = ContactTag.objects.create(owner=owner, name=f"B{n}")
    tag_a.members.add(*people)
    tag_b.members.add(*people[::2])
    Friendship.objects.filter(user=owner).update(remark="r")


def _fill_requests(owner, make_user, n):
    for person in [make_user() for _ in range(n)]:
        FriendRequest.objects.create(from_user=person, to_user=owner, note="hi")


def _fill_tags(owner, make_user, n):
    people = _friends(owner, make_user, 3)
    for i in range(n):
        ContactTag.objects.create(owner=owner, name=f"tag{n}-{i}").members.add(*people)


def _fill_blocks(owner, make_user, n):
    for person in [make_user() for _ in range(n)]:
        Block.objects.create(blocker=owner, blocked=person)


# Queries: 1 authentication (session joined with user) + what the list itself needs.
@pytest.mark.parametrize(
    ("url", "fill", "queries"),
    [
        ("/api/v1/contacts/friends", _fill_friends, 3),  # friendships+friend, tags of the page
        ("/api/v1/contacts/requests", _fill_requests, 2),  # requests joined with both users
        ("/api/v1/contacts/tags", _fill_tags, 3),  # tags, their members
        ("/api/v1/contacts/blocks", _fill_blocks, 2),  # blocks joined with the blocked users
    ],
)
def test_list_query_count_does_not_grow_with_rows(
    client_for, alice, make_user, django_assert_num_queries, url, fill, queries
):
    client = client_for(alice)
    for n in (2, 6):
        fill(alice, make_user, n)
        with django_assert_num_queries(queries):
            response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        rows = body if isinstance(body, list) else body["results"]
        assert len(rows) >= n


def test_search_result_token_is_required_for_a_search_request(client_for, alice, bob, carol):
    client = client_for(alice)
    found = client.get("/api/v1/contacts/search", {"q": "bob"}).json()
    assert found["user"]["id"] == bob.pk
    # Walking the id range does not work: a search request needs the search's token...
    error = assert_error(send(client, bob, search_token=""), 400, "search_token_invalid")
    assert "search_token" in error["fields"]
    # ...for this very pair...
    carol_token = services.friend_search_token(viewer=alice, target=carol)
    assert_error(send(client, bob, search_token=carol_token), 400, "search_token_invalid")
    stolen = services.friend_search_token(viewer=carol, target=bob)
    assert_error(send(client, bob, search_token=stolen), 400, "search_token_invalid")
    assert_error(send(client, bob, search_token="forged"), 400, "search_token_invalid")
    assert not FriendRequest.objects.exists()
    # ...and the one the search gave works.
    response = send(client, bob, search_token=found["add_token"])
    assert response.status_code == 201, response.json()
