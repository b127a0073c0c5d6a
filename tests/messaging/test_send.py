"""Sending: the write path, sequences, idempotency, authorization, bad input."""

from __future__ import annotations

import pytest

from messaging import services
from messaging.models import Conversation, Member, Message
from superapp.core.errors import ApplicationError, Forbidden, NotFound, ValidationFailed
from superapp.core.models import Event
from tests.conftest import befriend

from .conftest import cmid, direct, group, send

pytestmark = pytest.mark.django_db


def stream(user):
    return list(Event.objects.filter(user=user).order_by("seq").values_list("type", flat=True))


def test_first_message_creates_the_direct_conversation_once(alice, bob):
    befriend(alice, bob)
    first = send(alice, to=bob, text="hi")
    second = send(bob, to=alice, text="hey")
    assert first.conversation_id == second.conversation_id
    conv = Conversation.objects.get()
    assert conv.kind == "direct" and conv.member_count == 2 and conv.last_seq == 2
    assert [first.seq, second.seq] == [1, 2]
    assert stream(alice) == ["conversation.new", "message.new", "message.new"]
    assert stream(bob) == ["conversation.new", "message.new", "message.new"]


def test_send_moves_only_the_senders_read_mark(alice, bob):
    conv = direct(alice, bob)
    send(alice, conv)
    marks = dict(Member.objects.filter(conversation=conv).values_list("user_id", "last_read_seq"))
    assert marks == {alice.pk: 2, bob.pk: 0}


def test_retry_with_the_same_client_msg_id_returns_the_stored_message(alice, bob):
    conv = direct(alice, bob)
    one = services.message_send(
        sender_id=alice.pk, conversation_id=conv.pk, client_msg_id="x1", kind="text", text="a"
    )
    two = services.message_send(
        sender_id=alice.pk, conversation_id=conv.pk, client_msg_id="x1", kind="text", text="a"
    )
    assert one.created and not two.created
    assert one.message.pk == two.message.pk
    assert Message.objects.filter(client_msg_id="x1").count() == 1
    assert Conversation.objects.get(pk=conv.pk).last_seq == 2  # no hole left by the retry
    assert stream(bob).count("message.new") == 2


def test_client_msg_id_reused_for_another_conversation_is_a_conflict(alice, bob, carol):
    one, two = direct(alice, bob), direct(alice, carol)
    services.message_send(
        sender_id=alice.pk, conversation_id=one.pk, client_msg_id="dup", kind="text", text="a"
    )
    with pytest.raises(ApplicationError) as exc:
        services.message_send(
            sender_id=alice.pk, conversation_id=two.pk, client_msg_id="dup", kind="text", text="a"
        )
    assert exc.value.code == "client_msg_id_reused" and exc.value.status_code == 409


def test_non_member_cannot_send(alice, bob, carol):
    conv = direct(alice, bob)
    with pytest.raises(NotFound):
        send(carol, conv)
    with pytest.raises(NotFound):
        send(carol, 10**9)
    assert Message.objects.count() == 1


def test_direct_needs_friends_unless_the_receiver_allows_strangers(alice, bob):
    with pytest.raises(Forbidden) as exc:
        send(alice, to=bob)
    assert exc.value.code == "not_friends"
    assert not Conversation.objects.exists()
    services.settings_update(user_id=bob.pk, changes={"allow_strangers": True})
    assert send(alice, to=bob).seq == 1


def test_blocked_either_way_cannot_message(alice, bob, client_for):
    conv = direct(alice, bob)
    client_for(bob).post("/api/v1/contacts/blocks", {"user_id": alice.pk}, format="json")
    for sender in (alice, bob):
        with pytest.raises(Forbidden) as exc:
            send(sender, conv)
        assert exc.value.code == "blocked"
    assert Conversation.objects.get().last_seq == 1


def test_unfriended_cannot_message_any_more(alice, bob, client_for):
    conv = direct(alice, bob)
    client_for(bob).delete(f"/api/v1/contacts/friends/{alice.pk}")
    with pytest.raises(Forbidden):
        send(alice, conv)


def test_cannot_message_self_or_unknown_users(alice):
    with pytest.raises(ValidationFailed):
        send(alice, to=alice)
    from types import SimpleNamespace

    with pytest.raises(NotFound):
        send(alice, to=SimpleNamespace(pk=10**9))


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"kind": "nope"}, "unknown_kind"),
        ({"kind": "system"}, "unknown_kind"),
        ({"text": ""}, "invalid"),
        ({"text": "   "}, "invalid"),
        ({"text": "x" * 4001}, "text_too_long"),
        ({"text": 5}, "invalid"),
        ({"client_msg_id": ""}, "invalid"),
        ({"client_msg_id": "a" * 65}, "invalid"),
        ({"client_msg_id": "has space"}, "invalid"),
        ({"client_msg_id": 7}, "invalid"),
        ({"reply_to_seq": 0}, "invalid"),
        ({"reply_to_seq": 99}, "bad_seq"),
        ({"reply_to_seq": "1"}, "invalid"),
        ({"mentions": [1]}, "invalid"),  # not in a direct chat
        ({"content": {"x": 1}}, "invalid"),
        ({"content": "str"}, "invalid"),
        ({"kind": "location", "text": "", "content": {"latitude": 91, "longitude": 0}}, "invalid"),
        ({"kind": "location", "text": "", "content": {"latitude": "1", "longitude": 0}}, "invalid"),
        ({"kind": "sticker", "text": "", "content": {}}, "invalid"),
        ({"kind": "image", "text": "", "content": {"media_id": "not-a-uuid"}}, "invalid"),
        (
            {"kind": "image", "text": "", "content": {"media_id": "6f1c2d8e-8a0b-4c1e-9d55-0e5c3f6a7b21"}},
            "media_not_found",
        ),
        ({"kind": "contact", "text": "", "content": {"user_id": 10**9}}, "user_not_found"),
        ({"kind": "sticker", "text": "caption", "content": {"sticker_id": "s"}}, "invalid"),
    ],
)
def test_bad_input_is_a_400_and_stores_nothing(alice, bob, fields, code):
    conv = direct(alice, bob)
    args = {"client_msg_id": cmid(), "kind": "text", "text": "hi", **fields}
    with pytest.raises(ValidationFailed) as exc:
        services.message_send(
            sender_id=alice.pk, conversation_id=conv.pk, client_msg_id=args["client_msg_id"], kind=args["kind"],
            text=args["text"], content_fields=args.get("content"), reply_to_seq=args.get("reply_to_seq"),
            mentions=args.get("mentions"),
        )  # fmt: skip
    assert exc.value.code == code
    assert Message.objects.count() == 1 and Conversation.objects.get().last_seq == 1


def test_kinds_and_reply(alice, bob):
    conv = direct(alice, bob)
    sticker = send(bob, conv, kind="sticker", content={"sticker_id": "cat-1", "pack_id": "cats"})
    where = send(alice, conv, kind="location", content={"latitude": 31.2, "longitude": 121.5, "name": "Bund"})
    card = send(alice, conv, kind="contact", content={"user_id": bob.pk})
    reply = send(bob, conv, text="nice place", reply_to_seq=where.seq)
    assert sticker.content == {"sticker_id": "cat-1", "pack_id": "cats"}
    assert where.content["latitude"] == 31.2
    assert card.content["user"]["handle"] == "bob"
    assert reply.reply_to_id == where.pk


def test_control_characters_are_dropped(alice, bob):
    conv = direct(alice, bob)
    assert send(alice, conv, text="a\x00b\x07c\nd").text == "abc\nd"


def test_mentions_in_groups(alice, bob, carol, make_user):
    conv = group(alice, bob, carol)
    stranger = make_user()
    msg = send(bob, conv, text="@carol hi", mentions=[carol.pk])
    assert msg.mentions == [carol.pk]
    assert Member.objects.get(conversation=conv, user=carol).last_mention_seq == msg.seq
    with pytest.raises(ValidationFailed):
        send(bob, conv, mentions=[stranger.pk])
    with pytest.raises(Forbidden):
        send(bob, conv, mention_all=True)  # plain members cannot @all
    everyone = send(alice, conv, text="@all", mention_all=True)
    assert Conversation.objects.get(pk=conv.pk).last_mention_all_seq == everyone.seq


@pytest.mark.django_db(transaction=True)
def test_the_send_path_is_four_statements(alice, bob, carol, settings):
    """Pinned, direct chat and group alike: claim the number (with the membership check and my
    read mark), the relation check (direct) or the members (group), the message, and the stream
    heads with the events (one statement: superapp.core.events)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.MESSAGING_PUSH_ENABLED = False
    chat, team = direct(alice, bob), group(alice, bob, carol)
    for conv, expected in ((chat, 4), (team, 4)):
        with CaptureQueriesContext(connection) as queries:
            send(alice, conv)
        statements = [q["sql"] for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
        assert len(statements) == expected, statements
