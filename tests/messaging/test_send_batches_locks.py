"""Batched sends and locks: the batch's lock timeout ends with its transaction, ends the whole
batch at the first wait past it, and leaves a lone send to its own handler, sent once (found by
a review of the batching)."""

from __future__ import annotations

import pytest
from django.db import connection

from messaging import services
from messaging.models import Member, Message
from superapp.core.models import UserStream
from tests.threads import hold_locks

from .conftest import direct, group
from .test_send_batches import _send


def _show_lock_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        return cursor.fetchone()[0]


# --- the lock timeout must end with the batch's transaction (same connection, later use) -----------
@pytest.mark.django_db(transaction=True)
def test_lock_timeout_does_not_outlive_the_batch(alice, bob, carol):
    ab, ac, cb = direct(alice, bob), direct(alice, carol), direct(carol, bob)
    assert _show_lock_timeout() == "0"
    services.message_send_many(
        [_send(alice, ab, "a"), _send(alice, ac, "b"), _send(carol, cb, "r", "re", reply_to_seq=999)],
        defer=True,
    )
    assert _show_lock_timeout() == "0"
    services.message_send_many([_send(bob, ab, "lone")], defer=True)  # the lone path
    assert _show_lock_timeout() == "0"
    # a batch that is rolled back (a conflict inside): still nothing left
    services.message_send_many([_send(alice, ab, "a"), _send(bob, ab, "a2")], defer=True)
    assert _show_lock_timeout() == "0"


# --- a lone send on a batch thread whose recipient's stream head is held: deferred, then sent once ---
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["plain", "reply", "to_user"])
def test_lone_send_lock_timeout_is_deferred_and_sent_once(alice, bob, kind):
    ab = direct(alice, bob)
    first = services.message_send(
        sender_id=alice.pk, client_msg_id="f", kind="text", conversation_id=ab.pk, text="x"
    )
    held = hold_locks(lambda: list(UserStream.objects.select_for_update().filter(user_id=bob.pk)))
    try:
        extra = {"reply_to_seq": first.message.seq} if kind == "reply" else {}
        send = _send(alice, ab, "lone", "hi", **extra)
        if kind == "to_user":
            send = {**send, "conversation_id": None, "to_user_id": bob.pk}
        outcomes = services.message_send_many([send], defer=True)  # returns after the lock timeout
        assert outcomes == [None], outcomes  # left to the frame's own handler
        assert not Message.objects.filter(sender=alice, client_msg_id="lone").exists()
    finally:
        held.release()
    again = services.message_send(**send)
    assert again.created
    assert Message.objects.filter(sender=alice, client_msg_id="lone").count() == 1


# --- the lone send's lock timeout is set by its claim statement itself: it must apply to the claim's
# own locks (the conversation row, the sender's member row), which that statement takes --------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("held_row", ["conversation", "sender_member"])
def test_lone_send_times_out_on_the_claims_own_locks(alice, bob, held_row, settings):
    settings.MESSAGING_SEND_BATCH_LOCK_TIMEOUT_MS = 100
    ab = direct(alice, bob)
    first = services.message_send(
        sender_id=alice.pk, client_msg_id="f", kind="text", conversation_id=ab.pk, text="x"
    ).message
    if held_row == "conversation":
        rows = lambda: list(type(ab).objects.select_for_update().filter(pk=ab.pk))  # noqa: E731
    else:
        rows = lambda: list(Member.objects.select_for_update().filter(conversation=ab, user=alice))  # noqa: E731
    held = hold_locks(rows)
    try:
        # Without the timeout this would wait for the holder, which lets go only after it returns.
        outcomes = services.message_send_many([_send(alice, ab, "lone", "hi")], defer=True)
        assert outcomes == [None], outcomes  # the lock wait timed out: left to the frame's own handler
        assert not Message.objects.filter(sender=alice, client_msg_id="lone").exists()
        assert _show_lock_timeout() == "0"  # and the timeout ended with that transaction
    finally:
        held.release()
    ab.refresh_from_db()
    assert ab.last_seq == first.seq  # the timed-out claim took no number
    assert services.message_send(**_send(alice, ab, "lone", "hi")).message.seq == first.seq + 1


# --- ... and to the table locks the claim takes before it runs (a migration's ALTER TABLE or
# CREATE INDEX holds them), prepared or not yet (found by a review: a timeout set by the claim
# statement itself came too late for those) ----------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("table", ["messaging_conversation", "messaging_member"])
@pytest.mark.parametrize("prepared", [False, True])
def test_lone_send_times_out_on_a_table_lock(alice, bob, settings, table, prepared):
    settings.MESSAGING_SEND_BATCH_LOCK_TIMEOUT_MS = 100
    ab = direct(alice, bob)
    services.message_send(sender_id=alice.pk, client_msg_id="f", kind="text", conversation_id=ab.pk, text="x")
    if prepared:  # the claim already prepared on this connection: the EXECUTE path
        assert services.message_send_many([_send(alice, ab, "warm", "hi")], defer=True)[0].created

    def lock():
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN SHARE MODE")  # as CREATE INDEX takes

    # The holder lets go after 10 s on its own: a send that waited for it would then be stored.
    held = hold_locks(lock, timeout=10)
    try:
        outcomes = services.message_send_many([_send(alice, ab, "lone", "hi")], defer=True)
        assert outcomes == [None], outcomes  # timed out: left to the frame's own handler
    finally:
        held.release()
    assert not Message.objects.filter(sender=alice, client_msg_id="lone").exists()


# --- non-plain sends in savepoints: each lock wait is timed out separately, and they add up --------
@pytest.mark.django_db(transaction=True)
def test_a_batch_waits_at_most_one_lock_timeout(make_user, settings):
    settings.MESSAGING_SEND_BATCH_LOCK_TIMEOUT_MS = 200
    users = [make_user() for _ in range(6)]
    team = group(*users)
    seed = services.message_send(sender_id=users[0].pk, client_msg_id="seed", kind="text",
                                 conversation_id=team.pk, text="x")  # fmt: skip
    senders = users[1:]
    # another transaction holds the senders' member rows (their read marks) in the group
    held = hold_locks(
        lambda: list(Member.objects.select_for_update().filter(conversation=team, user__in=senders))
    )
    from messaging.services import messages

    tried: list[str] = []
    real_send = messages._send

    def counting(sender_id, client_msg_id, *args, **kwargs):
        if kwargs.get("shared") is not None:
            tried.append(client_msg_id)
        return real_send(sender_id, client_msg_id, *args, **kwargs)

    settings_patch = pytest.MonkeyPatch()
    settings_patch.setattr(messages, "_send", counting)
    try:
        outcomes = services.message_send_many(
            [_send(u, team, f"r{k}", "re", reply_to_seq=seed.message.seq) for k, u in enumerate(senders)],
            defer=True,
        )
    finally:
        settings_patch.undo()
        held.release()
    assert outcomes == [None] * len(senders)  # all left to their own handlers
    # The first lock wait past the timeout ended the batch: no second send waited in it.
    assert tried == ["r0"], tried
