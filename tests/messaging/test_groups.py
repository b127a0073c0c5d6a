"""Groups: creation, invitations (direct, approval mode, link/QR), roles, leave/remove, transfer,
dissolve, the 500-member limit, per-member settings, system messages."""

from __future__ import annotations

import time

import pytest
from django.core import signing

from messaging import services
from messaging.models import Conversation, JoinRequest, Member, Message
from superapp.core.errors import Forbidden, NotFound, ValidationFailed
from superapp.core.models import Event
from tests.conftest import befriend
from tests.core.test_errors import assert_error

from .conftest import group, image_upload, send

pytestmark = pytest.mark.django_db


def system_events(conv):
    return [
        m.content["event"] for m in Message.objects.filter(conversation=conv, kind="system").order_by("seq")
    ]


def test_create_over_rest(client_for, alice, bob, carol):
    befriend(alice, bob)
    befriend(alice, carol)
    response = client_for(alice).post(
        "/api/v1/messaging/groups", {"name": "Trip", "member_ids": [bob.pk, carol.pk]}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["role"] == "owner" and body["conversation"]["member_count"] == 3
    assert body["unread_count"] == 0  # my own system line is read
    conv = Conversation.objects.get(pk=body["conversation"]["id"])
    assert system_events(conv) == ["member.invited"]
    assert Event.objects.filter(user=bob, type="conversation.new").exists()
    assert_error(client_for(alice).post("/api/v1/messaging/groups", {"member_ids": []}, format="json"), 400)
    assert_error(
        client_for(alice).post(
            "/api/v1/messaging/groups", {"name": "x" * 65, "member_ids": [bob.pk]}, format="json"
        ),
        400,
    )


def test_only_friends_can_be_added(alice, bob, make_user):
    stranger = make_user()
    befriend(alice, bob)
    with pytest.raises(ValidationFailed) as exc:
        services.group_create(creator_id=alice.pk, member_ids=[bob.pk, stranger.pk])
    assert exc.value.code == "not_friends"
    assert not Conversation.objects.exists()


def test_newcomers_see_history_from_their_join(client_for, alice, bob, carol):
    conv = group(alice, bob)
    send(alice, conv, text="before carol")
    befriend(bob, carol)
    outcome = services.group_invite(user_id=bob.pk, conversation_id=conv.pk, user_ids=[carol.pk])
    assert outcome.added == [carol.pk]
    seen = client_for(carol).get(f"/api/v1/messaging/conversations/{conv.pk}/messages").json()["messages"]
    assert [m["content"].get("event") for m in seen] == ["member.invited"]
    item = client_for(carol).get(f"/api/v1/messaging/conversations/{conv.pk}").json()
    assert item["unread_count"] == 1 and item["joined_seq"] == 2


def test_approval_mode(client_for, alice, bob, carol):
    conv = group(alice, bob)
    services.group_update(user_id=alice.pk, conversation_id=conv.pk, invite_approval=True)
    befriend(bob, carol)
    outcome = services.group_invite(user_id=bob.pk, conversation_id=conv.pk, user_ids=[carol.pk])
    assert outcome == services.InviteOutcome(added=[], requested=[carol.pk])
    req = JoinRequest.objects.get()
    assert Event.objects.filter(user=alice, type="conversation.join_request").exists()
    assert not Event.objects.filter(user=bob, type="conversation.join_request").exists()
    assert_error(client_for(bob).post(f"/api/v1/messaging/join-requests/{req.pk}/approve"), 403)
    listed = client_for(alice).get(f"/api/v1/messaging/conversations/{conv.pk}/join-requests").json()
    assert [r["user"]["id"] for r in listed] == [carol.pk]
    ok = client_for(alice).post(f"/api/v1/messaging/join-requests/{req.pk}/approve")
    assert ok.status_code == 200 and ok.json()["status"] == "approved"
    assert Member.objects.filter(conversation=conv, user=carol, left_at__isnull=True).exists()
    assert_error(client_for(alice).post(f"/api/v1/messaging/join-requests/{req.pk}/decline"), 409)
    assert_error(client_for(carol).post("/api/v1/messaging/join-requests/999999/approve"), 404)


def test_invite_link_and_qr(client_for, alice, bob, carol):
    conv = group(alice, bob)
    client = client_for(bob)
    link = client.post(
        f"/api/v1/messaging/conversations/{conv.pk}/invite-link", {"expires_in": 3600}, format="json"
    ).json()
    assert link["url"].startswith("superapp://groups/join?code=")
    qr = client.get(f"/api/v1/messaging/conversations/{conv.pk}/invite-qr.png")
    assert qr.status_code == 200 and qr["Content-Type"] == "image/png" and qr.content[:4] == b"\x89PNG"
    joined = client_for(carol).post("/api/v1/messaging/groups/join", {"code": link["url"]}, format="json")
    assert joined.status_code == 200 and joined.json()["joined"] is True
    assert system_events(conv)[-1] == "member.joined"
    assert_error(
        client_for(carol).post("/api/v1/messaging/groups/join", {"code": "garbage"}, format="json"),
        400,
        "invite_invalid",
    )
    expired = signing.dumps(
        {"c": conv.pk, "v": 1, "i": bob.pk, "e": int(time.time()) - 1},
        salt="messaging.group-invite",
        compress=True,
    )
    assert_error(
        client_for(carol).post("/api/v1/messaging/groups/join", {"code": expired}, format="json"),
        400,
        "invite_expired",
    )
    assert (
        client_for(alice).delete(f"/api/v1/messaging/conversations/{conv.pk}/invite-link").status_code == 204
    )
    assert_error(
        client_for(carol).post("/api/v1/messaging/groups/join", {"code": link["code"]}, format="json"),
        400,
        "invite_revoked",
    )
    assert_error(
        client.post(
            f"/api/v1/messaging/conversations/{conv.pk}/invite-link", {"expires_in": 10**9}, format="json"
        ),
        400,
    )


def test_roles_remove_leave_transfer(alice, bob, carol, make_user):
    dave = make_user(handle="dave")
    conv = group(alice, bob, carol, dave)
    with pytest.raises(Forbidden):
        services.group_set_role(user_id=bob.pk, conversation_id=conv.pk, target_id=carol.pk, role="admin")
    services.group_set_role(user_id=alice.pk, conversation_id=conv.pk, target_id=bob.pk, role="admin")
    with pytest.raises(Forbidden):
        services.group_remove_member(user_id=carol.pk, conversation_id=conv.pk, target_id=dave.pk)
    services.group_remove_member(
        user_id=bob.pk, conversation_id=conv.pk, target_id=dave.pk
    )  # admin removes a member
    with pytest.raises(Forbidden):
        services.group_remove_member(user_id=bob.pk, conversation_id=conv.pk, target_id=alice.pk)
    assert Event.objects.filter(user=dave, type="conversation.member.removed").exists()
    with pytest.raises(NotFound):
        send(dave, conv)
    services.group_transfer(user_id=alice.pk, conversation_id=conv.pk, target_id=carol.pk)
    roles = dict(
        Member.objects.filter(conversation=conv, left_at__isnull=True).values_list("user_id", "role")
    )
    assert roles == {alice.pk: "member", bob.pk: "admin", carol.pk: "owner"}
    # The owner leaves: the oldest admin takes over.
    services.group_remove_member(user_id=carol.pk, conversation_id=conv.pk, target_id=carol.pk)
    assert Conversation.objects.get(pk=conv.pk).owner_id == bob.pk
    assert Conversation.objects.get(pk=conv.pk).member_count == 2
    assert system_events(conv) == ["member.invited", "member.removed", "owner_changed", "member.left"]


def test_rename_announcement_avatar(alice, bob, monkeypatch):
    conv = group(alice, bob)
    services.group_update(user_id=bob.pk, conversation_id=conv.pk, name="New name")
    with pytest.raises(Forbidden):
        services.group_update(user_id=bob.pk, conversation_id=conv.pk, announcement="hear ye")
    services.member_settings_update(user_id=bob.pk, conversation_id=conv.pk, muted=True)
    services.group_update(user_id=alice.pk, conversation_id=conv.pk, announcement="Dinner at 7")
    note = Message.objects.filter(conversation=conv).order_by("-seq").first()
    assert note.kind == "system" and note.text == "Dinner at 7" and note.mention_all  # reaches muted members
    assert Event.objects.filter(user=bob, type="conversation.updated").count() == 2
    with pytest.raises(Forbidden):
        services.group_avatar_set(user_id=bob.pk, conversation_id=conv.pk, upload=image_upload())
    conv = services.group_avatar_set(user_id=alice.pk, conversation_id=conv.pk, upload=image_upload())
    assert conv.avatar and conv.avatar_thumb
    assert system_events(conv) == ["member.invited", "renamed", "announcement", "avatar_changed"]


def test_dissolve(client_for, alice, bob):
    conv = group(alice, bob)
    assert_error(client_for(bob).delete(f"/api/v1/messaging/conversations/{conv.pk}"), 403)
    assert client_for(alice).delete(f"/api/v1/messaging/conversations/{conv.pk}").status_code == 204
    assert Event.objects.filter(user=bob, type="conversation.dissolved").exists()
    assert not Member.objects.filter(conversation=conv, left_at__isnull=True).exists()
    assert_error(client_for(bob).get(f"/api/v1/messaging/conversations/{conv.pk}/messages"), 404)


def test_at_most_500_members(alice, make_user, settings):
    settings.MESSAGING_GROUP_MAX_MEMBERS = 4
    friends = [make_user() for _ in range(4)]
    for f in friends:
        befriend(alice, f)
    with pytest.raises(ValidationFailed) as exc:
        services.group_create(creator_id=alice.pk, member_ids=[f.pk for f in friends])
    assert exc.value.code == "group_full"
    conv = services.group_create(creator_id=alice.pk, member_ids=[f.pk for f in friends[:3]])
    with pytest.raises(ValidationFailed):
        services.group_invite(user_id=alice.pk, conversation_id=conv.pk, user_ids=[friends[3].pk])
    assert Conversation.objects.get(pk=conv.pk).member_count == 4


def test_member_settings(client_for, alice, bob):
    conv = group(alice, bob)
    client = client_for(bob)
    url = f"/api/v1/messaging/conversations/{conv.pk}/settings"
    body = client.patch(url, {"muted": True, "pinned": True, "nickname": "Bobby"}, format="json").json()
    assert (body["muted"], body["pinned"], body["nickname"]) == (True, True, "Bobby")
    assert Event.objects.filter(user=alice, type="conversation.member.updated").exists()
    assert not Event.objects.filter(user=alice, type="conversation.settings").exists()
    assert Event.objects.filter(user=bob, type="conversation.settings").exists()
    assert_error(client.patch(url, {"muted": "yes please"}, format="json"), 400)
    assert_error(client.patch(url, {"nickname": "x" * 40}, format="json"), 400)
    members = client.get(f"/api/v1/messaging/conversations/{conv.pk}/members").json()
    assert {m["user"]["id"]: m["nickname"] for m in members} == {alice.pk: "", bob.pk: "Bobby"}


def test_at_all_only_for_owner_and_admins_over_rest(client_for, alice, bob):
    conv = group(alice, bob)
    url = f"/api/v1/messaging/conversations/{conv.pk}/messages"
    body = {"client_msg_id": "a", "kind": "text", "text": "@all", "mention_all": True}
    assert_error(client_for(bob).post(url, body, format="json"), 403, "mention_all_forbidden")
    assert client_for(alice).post(url, body, format="json").status_code == 201
