"""Unread counts (selectors.hidden_unread) against what history shows: the count is the number of
messages after the read mark the member can see, whatever the mix of hides, notice lines about
bubbles from before a join, recalls, reads, leaves and re-joins."""

from __future__ import annotations

import random

import pytest
from django.db import connection, transaction

from messaging import selectors, services
from messaging.models import Conversation, Member, Message
from messaging.services import _core

from ..conftest import befriend
from .conftest import direct, group, send

pytestmark = pytest.mark.django_db


def _truth(member: Member) -> int:
    """What history shows after the mark (selectors.history's rules)."""
    return selectors._visible_messages(member, member.user_id).filter(seq__gt=member.last_read_seq).count()


def _listed(user) -> dict[int, int]:
    members = list(selectors.conversation_list(user_id=user.pk))
    selectors.decorate(members, user_id=user.pk)
    return {m.conversation_id: selectors.unread(m) for m in members}


def _notice_line(conv_id: int, about_seq: int) -> Message:
    """A payment's notice line about the bubble at ``about_seq`` (as money.py writes it)."""
    with transaction.atomic():
        r = _core.roster(conv_id, user_id=Conversation.objects.get(pk=conv_id).owner_id)
        return _core.system_message(
            r, actor_id=None, event="transfer.expired", transfer_id=about_seq, message_seq=about_seq
        )


@pytest.mark.parametrize("seed", range(20))
def test_unread_is_what_history_shows_after_the_mark(alice, bob, carol, make_user, seed):
    rnd = random.Random(seed)
    dave = make_user()
    users = [alice, bob, carol, dave]
    conv = group(alice, bob, carol, dave)
    services.group_remove_member(user_id=carol.pk, conversation_id=conv.pk, target_id=carol.pk)
    services.group_remove_member(user_id=dave.pk, conversation_id=conv.pk, target_id=dave.pk)
    for step in range(60):
        active = {m.user_id: m for m in Member.objects.filter(conversation=conv, left_at__isnull=True)}
        last = Conversation.objects.get(pk=conv.pk).last_seq
        op = rnd.random()
        if op < 0.35:
            sender = rnd.choice([u for u in users if u.pk in active])
            send(sender, conv, text=f"s{step}")
        elif op < 0.5:
            _notice_line(conv.pk, rnd.randint(1, last))
        elif op < 0.65:
            u = rnd.choice([u for u in users if u.pk in active])
            m = active[u.pk]
            seqs = list(range(m.joined_seq + 1, last + 1))
            if seqs:
                services.message_hide(user_id=u.pk, conversation_id=conv.pk, seq=rnd.choice(seqs))
        elif op < 0.8:
            u = rnd.choice([u for u in users if u.pk in active])
            m = active[u.pk]
            if last > m.joined_seq:
                services.conversation_mark_read(
                    user_id=u.pk, conversation_id=conv.pk, seq=rnd.randint(m.joined_seq + 1, last)
                )
        elif op < 0.85:
            texts = list(
                Message.objects.filter(conversation=conv, kind="text", recalled_at__isnull=True).values_list(
                    "seq", flat=True
                )
            )
            if texts:
                services.message_recall(user_id=alice.pk, conversation_id=conv.pk, seq=rnd.choice(texts))
        elif op < 0.92:
            out = [u for u in (carol, dave) if u.pk not in active]
            if out:
                services.group_invite(
                    user_id=alice.pk, conversation_id=conv.pk, user_ids=[rnd.choice(out).pk]
                )
        else:
            leaving = [u for u in (carol, dave) if u.pk in active]
            if leaving:
                u = rnd.choice(leaving)
                services.group_remove_member(user_id=u.pk, conversation_id=conv.pk, target_id=u.pk)
        for u in users:
            m = (
                Member.objects.select_related("conversation")
                .filter(conversation=conv, user=u, left_at__isnull=True)
                .first()
            )
            if m is None:
                continue
            assert _listed(u)[conv.pk] == _truth(m), (seed, step, u.handle)


def test_a_mention_deleted_for_me_is_not_flagged_with_nothing_unread(alice, bob, carol):
    """The flag says "an unread message mentions me": once the mention is deleted for me and
    nothing else is unread, the list must not show "[@me]" on a conversation with 0 unread."""
    conv = group(alice, bob, carol)
    services.conversation_mark_read(
        user_id=bob.pk, conversation_id=conv.pk, seq=Conversation.objects.get(pk=conv.pk).last_seq
    )
    at_bob = send(alice, conv, text="@bob look", mentions=[bob.pk])
    everyone = send(alice, conv, text="@all look", mention_all=True)
    services.message_hide(user_id=bob.pk, conversation_id=conv.pk, seq=at_bob.seq)
    services.message_hide(user_id=bob.pk, conversation_id=conv.pk, seq=everyone.seq)
    (m,) = selectors.conversation_list(user_id=bob.pk)
    selectors.decorate([m], user_id=bob.pk)
    assert selectors.unread(m) == 0
    assert selectors.mentioned(m) is False


def test_a_line_written_while_the_list_is_built_is_not_subtracted(alice, bob, carol):
    """The page's memberships (with last_seq) are read first, the hidden messages by a later
    statement: a notice line hidden from a newcomer (or a message deleted for me on another
    device) committed between the two must not be subtracted from a distance that does not
    include it."""
    conv = group(alice, bob)
    befriend(alice, carol)
    bubble = send(alice, conv, text="the bubble")  # stands for a transfer's bubble
    services.group_invite(user_id=alice.pk, conversation_id=conv.pk, user_ids=[carol.pk])
    send(alice, conv, text="welcome")
    page = list(selectors.conversation_list(user_id=carol.pk))  # the list's first statement
    (before,) = page
    truth = _truth(before)
    assert truth == 2  # "carol invited", "welcome"
    _notice_line(conv.pk, bubble.seq)  # committed by another request meanwhile: hidden from carol
    selectors.decorate(page, user_id=carol.pk)  # the list's later statements
    assert selectors.unread(before) == truth  # got 1: never the number of unread at any moment


def test_a_hidden_row_inserted_without_its_place_gets_it(alice, bob):
    """A server still running the code from before migration 0007 (a rolling deploy) inserts
    "delete for me" rows without their conversation and seq: 0007's trigger fills them in, so
    that 0008's NOT NULL holds and the unread counts see the row."""
    conv = direct(alice, bob)
    msg = send(alice, conv, text="oops")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO messaging_hiddenmessage (user_id, message_id, created_at)"
            " VALUES (%s, %s, now()) RETURNING conversation_id, seq",
            [bob.pk, msg.pk],
        )
        assert cursor.fetchone() == (conv.pk, msg.seq)
    member = Member.objects.select_related("conversation").get(conversation=conv, user=bob)
    selectors.decorate([member], user_id=bob.pk)
    assert selectors.unread(member) == _truth(member) == member.conversation.last_seq - 1
