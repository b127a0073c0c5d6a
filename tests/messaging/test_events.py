"""One payload-shape test per messaging event type (what clients parse)."""

from __future__ import annotations

import pytest

from messaging import events, services
from superapp.core.models import Event
from tests.conftest import befriend

from .conftest import direct, group, send

pytestmark = pytest.mark.django_db

MESSAGE_KEYS = {
    "id", "conversation_id", "seq", "sender_id", "client_msg_id", "kind", "text", "content", "reply_to", "mentions",
    "mention_all", "forwarded", "created_at", "recalled", "recalled_at", "recalled_by",
}  # fmt: skip
CONVERSATION_KEYS = {
    "id", "kind", "name", "avatar_url", "avatar_thumb_url", "announcement", "announcement_at", "owner_id",
    "invite_approval", "member_count", "direct_user_ids", "last_seq", "created_at", "dissolved",
}  # fmt: skip
MEMBER_KEYS = {"user", "role", "nickname", "joined_at"}
USER_KEYS = {"id", "handle", "display_name", "avatar_thumb_url"}


def last(user, type_):
    event = Event.objects.filter(user=user, type=type_).order_by("-seq").first()
    assert event is not None, f"no {type_} for {user}"
    return event.data


def test_every_type_is_covered():
    assert len(set(events.ALL_TYPES)) == 14


def test_message_new(alice, bob):
    conv = direct(alice, bob)
    send(bob, conv, text="re", reply_to_seq=1)
    data = last(alice, events.MESSAGE_NEW)
    assert set(data) == MESSAGE_KEYS
    assert data["reply_to"] == {"id": data["reply_to"]["id"], "seq": 1, "sender_id": alice.pk, "kind": "text",
                                "text": "first", "recalled": False}  # fmt: skip
    assert data["created_at"].endswith("Z") and data["recalled"] is False


def test_message_recalled_and_deleted(alice, bob):
    conv = direct(alice, bob)
    services.message_recall(user_id=alice.pk, conversation_id=conv.pk, seq=1)
    assert set(last(bob, events.MESSAGE_RECALLED)) == {
        "conversation_id",
        "id",
        "seq",
        "sender_id",
        "recalled_by",
        "recalled_at",
    }
    services.message_hide(user_id=bob.pk, conversation_id=conv.pk, seq=1)
    assert last(bob, events.MESSAGE_DELETED) == {"conversation_id": conv.pk, "seq": 1}
    assert not Event.objects.filter(user=alice, type=events.MESSAGE_DELETED).exists()


def test_recall_erases_the_text_from_stored_events(alice, bob, carol, django_capture_on_commit_callbacks):
    """A device that syncs after a recall never receives the recalled text, nor its quote."""
    from superapp.core import events as core_events

    conv = group(alice, bob, carol)
    secret = send(alice, conv, text="the secret", client_msg_id="s-1")
    send(bob, conv, text="quoting it", reply_to_seq=secret.seq)
    other = send(carol, conv, text="unrelated")
    services.group_remove_member(user_id=alice.pk, conversation_id=conv.pk, target_id=carol.pk)
    before = Event.objects.filter(type=events.MESSAGE_NEW).count()
    with django_capture_on_commit_callbacks(execute=True):  # the redaction task runs after commit
        services.message_recall(user_id=alice.pk, conversation_id=conv.pk, seq=secret.seq)
    snapshot = list(Event.objects.order_by("id").values_list("data", flat=True))
    services.message_events_redact(message_id=secret.id)  # a task run twice changes nothing more
    assert list(Event.objects.order_by("id").values_list("data", flat=True)) == snapshot
    for user in (alice, bob, carol):  # carol left before the recall: her stream is redacted too
        page = core_events.events_since(user_id=user.pk, since=0, limit=500)
        stored = [e["data"] for e in page["events"] if e["type"] == events.MESSAGE_NEW]
        assert "the secret" not in str(stored), user
        mine = [d for d in stored if d["id"] == secret.id]
        assert mine and mine[0]["recalled"] and mine[0]["text"] == "" and mine[0]["client_msg_id"] == "s-1"
        reply = next(d for d in stored if d["text"] == "quoting it")
        assert reply["reply_to"] == {"id": secret.id, "seq": secret.seq, "sender_id": alice.pk, "kind": "text",
                                     "text": "", "recalled": True}  # fmt: skip
        assert any(d["id"] == other.id and d["text"] == "unrelated" for d in stored)  # others untouched
    # Cursors do not move: the redaction rewrote rows, it did not append any.
    assert Event.objects.filter(type=events.MESSAGE_NEW).count() == before


def test_message_updated(alice, bob):
    """Only payments changes a message (a transfer's status): the message as it is now."""
    from payments import services as payment_services
    from tests.payments.conftest import PIN, fund, with_pin

    befriend(alice, bob)
    with_pin(alice)
    fund(alice, 100)
    transfer = payment_services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=100, pin=PIN)
    payment_services.transfer_accept(user_id=bob.pk, transfer_id=transfer.pk)
    for user in (alice, bob):
        data = last(user, events.MESSAGE_UPDATED)
        assert set(data) == MESSAGE_KEYS
        assert (data["seq"], data["kind"], data["sender_id"]) == (1, "transfer", alice.pk)
        assert data["content"] == {
            "transfer_id": transfer.pk, "receiver_id": bob.pk, "amount": 100, "currency": "CNY", "note": "",
            "status": "accepted",
        }  # fmt: skip


def test_conversation_read(alice, bob):
    conv = direct(alice, bob)
    services.conversation_mark_read(user_id=bob.pk, conversation_id=conv.pk, seq=1)
    assert last(alice, events.CONVERSATION_READ) == {
        "conversation_id": conv.pk,
        "user_id": bob.pk,
        "last_read_seq": 1,
    }


def test_conversation_new_updated_settings(alice, bob):
    conv = group(alice, bob)
    new = last(bob, events.CONVERSATION_NEW)
    assert set(new) == {"conversation"} and set(new["conversation"]) == CONVERSATION_KEYS
    services.group_update(user_id=bob.pk, conversation_id=conv.pk, name="N")
    updated = last(alice, events.CONVERSATION_UPDATED)
    assert set(updated) == {"conversation", "changed"} and updated["changed"] == ["name"]
    services.member_settings_update(user_id=bob.pk, conversation_id=conv.pk, pinned=True)
    assert last(bob, events.CONVERSATION_SETTINGS) == {
        "conversation_id": conv.pk,
        "muted": False,
        "pinned": True,
        "nickname": "",
    }


def test_member_added_removed_updated(alice, bob, carol):
    conv = group(alice, bob)
    befriend(alice, carol)
    services.group_invite(user_id=alice.pk, conversation_id=conv.pk, user_ids=[carol.pk])
    added = last(bob, events.MEMBER_ADDED)
    assert set(added) == {"conversation_id", "members", "by"}
    assert set(added["members"][0]) == MEMBER_KEYS and set(added["members"][0]["user"]) == USER_KEYS
    services.group_set_role(user_id=alice.pk, conversation_id=conv.pk, target_id=carol.pk, role="admin")
    updated = last(bob, events.MEMBER_UPDATED)
    assert set(updated) == {"conversation_id", "member"} and updated["member"]["role"] == "admin"
    services.group_remove_member(user_id=carol.pk, conversation_id=conv.pk, target_id=carol.pk)
    removed = last(carol, events.MEMBER_REMOVED)
    assert removed == {"conversation_id": conv.pk, "user_id": carol.pk, "reason": "left", "by": carol.pk}


def test_dissolved_and_join_request(alice, bob, carol):
    conv = group(alice, bob)
    services.group_update(user_id=alice.pk, conversation_id=conv.pk, invite_approval=True)
    befriend(bob, carol)
    services.group_invite(user_id=bob.pk, conversation_id=conv.pk, user_ids=[carol.pk])
    request = last(alice, events.JOIN_REQUEST)["request"]
    assert set(request) == {"id", "conversation_id", "user", "inviter_id", "via_link", "status", "created_at"}
    services.group_dissolve(user_id=alice.pk, conversation_id=conv.pk)
    assert last(bob, events.CONVERSATION_DISSOLVED) == {"conversation_id": conv.pk, "by": alice.pk}


def test_settings_updated(alice):
    services.settings_update(user_id=alice.pk, changes={"allow_strangers": True})
    assert last(alice, events.SETTINGS_UPDATED) == {
        "show_preview": True,
        "allow_strangers": True,
        "presence_visibility": "friends",
    }
