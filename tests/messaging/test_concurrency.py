"""Concurrent writers against PostgreSQL: contiguous sequences, one message per client_msg_id,
one direct conversation per pair."""

from __future__ import annotations

import pytest
from django.db import connection

from messaging import services
from messaging.models import Conversation, Member, Message
from superapp.core import events as core_events
from tests.conftest import befriend
from tests.threads import indexed, run_together

from .conftest import direct, group

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_sends_get_contiguous_sequences_and_every_member_sees_all_in_order(alice, bob, carol):
    assert connection.vendor == "postgresql"
    conv = group(alice, bob, carol)
    senders = [alice, bob, carol] * 3
    per_thread = 15

    def work(index):
        sender = senders[index]
        for n in range(per_thread):
            services.message_send(
                sender_id=sender.pk,
                conversation_id=conv.pk,
                client_msg_id=f"t{index}-{n}",
                kind="text",
                text=f"{index}/{n}",
            )

    outcome = run_together(indexed(len(senders), work), timeout=60)
    assert not outcome.raised, outcome.raised
    seqs = list(Message.objects.filter(conversation=conv).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) == 1 + len(senders) * per_thread  # the "created" system line, then the texts
    for user in (alice, bob, carol):
        page = core_events.events_since(user_id=user.pk, since=0, limit=500)
        got = [e["data"]["seq"] for e in page["events"] if e["type"] == "message.new"]
        assert got == seqs  # every message once, in the conversation's order


def test_a_retried_send_racing_itself_stores_one_message(alice, bob):
    conv = direct(alice, bob)

    def work(index):
        return services.message_send(
            sender_id=alice.pk, conversation_id=conv.pk, client_msg_id="same", kind="text", text="once"
        )

    outcome = run_together(indexed(8, work), timeout=60)
    assert not outcome.raised, outcome.raised
    results = outcome.results
    assert len({r.message.pk for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert Message.objects.filter(client_msg_id="same").count() == 1
    assert Conversation.objects.get(pk=conv.pk).last_seq == 2
    bob_events = core_events.events_since(user_id=bob.pk, since=0)["events"]
    assert [e["data"]["seq"] for e in bob_events if e["type"] == "message.new"] == [1, 2]


def test_both_sides_writing_first_make_one_direct_conversation(alice, bob):
    befriend(alice, bob)

    def work(index):
        a, b = (alice, bob) if index % 2 else (bob, alice)
        return services.message_send(
            sender_id=a.pk, to_user_id=b.pk, client_msg_id=f"first-{index}", kind="text", text="hi"
        )

    outcome = run_together(indexed(6, work), timeout=60)
    assert not outcome.raised, outcome.raised
    results = outcome.results
    assert Conversation.objects.count() == 1
    assert Member.objects.count() == 2
    assert sorted(r.message.seq for r in results) == [1, 2, 3, 4, 5, 6]
