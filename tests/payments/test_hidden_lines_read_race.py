"""A newcomer's read racing a transfer's notice line they cannot see (messaging/services/money.py
payment_message_update against messages.conversation_mark_read): the line never stays unread."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from messaging import services as chat_services
from messaging.models import Conversation, Member, Message
from messaging.services import _core
from payments import services

from ..conftest import befriend
from .conftest import PIN


def _unread(user, conv) -> int:
    member = Member.objects.get(user=user, conversation=conv, left_at__isnull=True)
    return Conversation.objects.get(pk=conv.pk).last_seq - member.last_read_seq


@pytest.mark.django_db(transaction=True)
def test_a_notice_line_written_while_a_newcomer_reads_does_not_stay_unread(payer, make_user, monkeypatch):
    owner, receiver, newcomer = make_user(), make_user(), make_user()
    for member in (payer, receiver, newcomer):
        befriend(owner, member)
    conv = chat_services.group_create(creator_id=owner.pk, name="team", member_ids=[payer.pk, receiver.pk])
    transfer = services.transfer_create(
        sender_id=payer.pk, receiver_id=receiver.pk, amount=100, pin=PIN, conversation_id=conv.pk
    )
    chat_services.group_invite(user_id=owner.pk, conversation_id=conv.pk, user_ids=[newcomer.pk])
    chat_services.message_send(
        sender_id=owner.pk, client_msg_id="hi", kind="text", text="welcome", conversation_id=conv.pk
    )
    welcome = Message.objects.get(sender=owner, client_msg_id="hi").seq
    assert _unread(newcomer, conv) == 2  # their "invited" line and "welcome"

    # The receiver accepts while the newcomer's read of "welcome" is between its check and its
    # write: the accept's notice line (hidden from the newcomer) is written meanwhile.
    real_bump = _core.bump_read
    accepting: list[threading.Thread] = []
    failures: list[BaseException] = []

    def accept() -> None:
        try:
            services.transfer_accept(user_id=receiver.pk, transfer_id=transfer.pk)
        except BaseException as exc:  # asserted below
            failures.append(exc)
        finally:
            connections.close_all()

    def bump_while_accepting(pk: int, seq: int) -> int:
        thread = threading.Thread(target=accept)
        thread.start()
        accepting.append(thread)
        time.sleep(0.5)  # without the read's lock the accept commits in here
        return real_bump(pk, seq)

    monkeypatch.setattr(_core, "bump_read", bump_while_accepting)
    chat_services.conversation_mark_read(user_id=newcomer.pk, conversation_id=conv.pk, seq=welcome)
    monkeypatch.setattr(_core, "bump_read", real_bump)
    accepting[0].join(30)
    assert not accepting[0].is_alive() and not failures, failures
    assert Conversation.objects.get(pk=conv.pk).last_seq == welcome + 1  # the notice line
    assert _unread(newcomer, conv) == 0


@pytest.mark.django_db
def test_a_read_that_cannot_move_the_mark_costs_no_visibility_query(alice, bob):
    befriend(alice, bob)
    conv = chat_services.message_send(
        sender_id=alice.pk, client_msg_id="c0", kind="text", text="hi", to_user_id=bob.pk
    ).message.conversation
    for n in range(4):
        chat_services.message_send(
            sender_id=alice.pk, client_msg_id=f"c{n + 1}", kind="text", text=f"m{n}", conversation_id=conv.pk
        )
    last = Conversation.objects.get(pk=conv.pk).last_seq
    assert chat_services.conversation_mark_read(user_id=bob.pk, conversation_id=conv.pk, seq=last) == last
    with CaptureQueriesContext(connection) as queries:  # a late frame from another device
        assert (
            chat_services.conversation_mark_read(user_id=bob.pk, conversation_id=conv.pk, seq=last - 2)
            == last
        )
    assert not [q for q in queries.captured_queries if "messaging_hiddenmessage" in q["sql"]]
