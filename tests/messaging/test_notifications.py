"""Push notifications for offline members: who, when (one per user per window), what it says."""

from __future__ import annotations

import pytest

from messaging import notifications, presence, services, tasks
from superapp.core.push import Notification

from .conftest import direct, group, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def scheduled(monkeypatch):
    """Tasks handed to Celery (not run): ``[(user_ids, countdown)]``."""
    calls = []
    monkeypatch.setattr(
        tasks.push_flush,
        "apply_async",
        lambda kwargs, countdown: calls.append((kwargs["user_ids"], countdown)),
    )
    return calls


@pytest.fixture
def pushed(monkeypatch):
    """Notifications handed to superapp.core.push: ``[(user_id, fields)]``."""
    out = []
    monkeypatch.setattr(notifications, "deliver", lambda *, user_id, fields: out.append((user_id, fields)))
    return out


def test_one_push_per_offline_user_per_window(
    alice, bob, scheduled, pushed, django_capture_on_commit_callbacks
):
    conv = direct(alice, bob)
    scheduled.clear()
    with django_capture_on_commit_callbacks(execute=True):
        for text in ("one", "two", "three"):
            send(alice, conv, text=text)
    assert scheduled == [([bob.pk], 3.0)]  # the first claimed bob's window; the others ride along
    tasks.push_flush(user_ids=[bob.pk])
    assert len(pushed) == 1
    user_id, fields = pushed[0]
    assert user_id == bob.pk
    assert fields["title"] == "Alice"
    assert fields["body"] == "[4 messages] three"
    assert fields["data"] == {"type": "messages", "count": "4", "conversation_id": str(conv.pk)}
    assert fields["badge"] == 4
    Notification(collapse_key="messages-1", **fields)  # a valid notification for superapp.core.push
    # Nothing new: a second run (a redelivered task) pushes nothing.
    tasks.push_flush(user_ids=[bob.pk])
    assert len(pushed) == 1
    # The window was freed: the next message starts a new one.
    with django_capture_on_commit_callbacks(execute=True):
        send(alice, conv, text="four")
    assert len(scheduled) == 2


def test_no_text_and_no_sender_without_preview(
    alice, bob, scheduled, pushed, django_capture_on_commit_callbacks
):
    conv = direct(alice, bob)
    services.settings_update(user_id=bob.pk, changes={"show_preview": False})
    send(alice, conv, text="my secret plan")
    tasks.push_flush(user_ids=[bob.pk])
    ((_, fields),) = pushed
    assert "secret" not in str(fields) and "Alice" not in str(fields) and "alice" not in str(fields)
    assert fields["title"] == "superapp" and fields["body"] == "You have 2 new messages."


def test_online_users_are_not_pushed(alice, bob, scheduled, pushed, django_capture_on_commit_callbacks):
    conv = direct(alice, bob)
    presence.socket_opened(user_id=bob.pk, channel="chan-1")
    scheduled.clear()
    with django_capture_on_commit_callbacks(execute=True):
        send(alice, conv)
    assert scheduled == []
    tasks.push_flush(user_ids=[bob.pk])  # came online before the window ended
    assert pushed == []


def test_muted_conversations_push_only_mentions(alice, bob, carol, scheduled, pushed):
    conv = group(alice, bob, carol, name="Team")
    services.member_settings_update(user_id=bob.pk, conversation_id=conv.pk, muted=True)
    tasks.push_flush(user_ids=[bob.pk])  # the "created" line is a system message: not pushed
    assert pushed == []
    send(carol, conv, text="chatter")
    tasks.push_flush(user_ids=[bob.pk])
    assert pushed == []
    send(carol, conv, text="@bob you there?", mentions=[bob.pk])
    tasks.push_flush(user_ids=[bob.pk])
    ((_, fields),) = pushed
    assert fields["title"] == "Team" and fields["body"] == "Carol: @bob you there?"
    assert fields["badge"] == 0  # muted conversations do not count on the badge


def test_read_and_recalled_messages_are_not_pushed(alice, bob, scheduled, pushed):
    conv = direct(alice, bob)
    services.conversation_mark_read(user_id=bob.pk, conversation_id=conv.pk, seq=1)
    msg = send(alice, conv, text="oops")
    services.message_recall(user_id=alice.pk, conversation_id=conv.pk, seq=msg.seq)
    tasks.push_flush(user_ids=[bob.pk])
    assert pushed == []


def test_messages_deleted_for_me_are_not_pushed(alice, bob, scheduled, pushed):
    conv = direct(alice, bob)
    services.conversation_mark_read(user_id=bob.pk, conversation_id=conv.pk, seq=1)
    kept = send(alice, conv, text="see you")
    gone = send(alice, conv, text="my secret plan")
    services.message_hide(user_id=bob.pk, conversation_id=conv.pk, seq=gone.seq)  # from the web
    tasks.push_flush(user_ids=[bob.pk])
    ((_, fields),) = pushed
    assert "secret" not in str(fields) and (fields["title"], fields["body"]) == ("Alice", "see you")
    assert fields["badge"] == 1
    assert kept.seq == gone.seq - 1


def test_several_conversations_in_one_summary(alice, bob, carol, scheduled, pushed):
    one, two = direct(bob, alice), direct(carol, alice)
    send(bob, one, kind="sticker", content={"sticker_id": "s"})
    tasks.push_flush(user_ids=[alice.pk])
    ((_, fields),) = pushed
    assert fields["title"] == "superapp"
    assert fields["body"] == "3 new messages in 2 chats\n[Sticker]"
    assert "conversation_id" not in fields["data"]
    assert two


def test_announcements_reach_muted_members(alice, bob, scheduled, pushed):
    conv = group(alice, bob, name="Club")
    services.member_settings_update(user_id=bob.pk, conversation_id=conv.pk, muted=True)
    services.group_update(user_id=alice.pk, conversation_id=conv.pk, announcement="Meeting moved to 8")
    tasks.push_flush(user_ids=[bob.pk])
    ((_, fields),) = pushed
    assert fields["body"] == "Alice: Meeting moved to 8"


def test_through_the_real_push_plumbing(alice, bob):
    """With the console backend (the default) and no device registered, a flush runs cleanly."""
    conv = direct(alice, bob)
    send(alice, conv)
    assert tasks.push_flush(user_ids=[bob.pk]) == 1


def test_push_failure_never_breaks_a_send(alice, bob, monkeypatch, django_capture_on_commit_callbacks):
    conv = direct(alice, bob)

    def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(presence, "online_ids", broken)
    with django_capture_on_commit_callbacks(execute=True):
        assert send(alice, conv).seq == 2


def test_the_badge_leaves_out_messages_deleted_for_me(alice, bob, carol):
    """The badge counts as the conversation list does: what I deleted for myself is not unread."""
    chat = direct(alice, bob)  # seq 1: the "created" line, unread for bob
    team = group(carol, bob, name="Team")  # bob's "created" line, unread
    for n in range(3):
        send(alice, chat, text=f"m{n}")  # seq 2-4
    send(carol, team, text="hi")
    assert notifications.badge_for(bob.pk) == 6
    services.message_hide(user_id=bob.pk, conversation_id=chat.pk, seq=3)
    services.message_hide(user_id=bob.pk, conversation_id=chat.pk, seq=4)
    services.message_hide(user_id=bob.pk, conversation_id=team.pk, seq=1)
    assert notifications.badge_for(bob.pk) == 3
    services.member_settings_update(user_id=bob.pk, conversation_id=team.pk, muted=True)
    assert notifications.badge_for(bob.pk) == 2
    services.conversation_mark_read(user_id=bob.pk, conversation_id=chat.pk, seq=2)
    assert notifications.badge_for(bob.pk) == 0
