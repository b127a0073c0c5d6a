"""Transfers to one member inside a group chat (issue #4): the bubble in the group for every
member, only the receiver decides, the group's rules (members, blocks; no friendship needed), the
same money path as a direct transfer, and the statements of both paths pinned."""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import services as account_services
from messaging import events as chat_events
from messaging import selectors as chat_selectors
from messaging import services as chat_services
from messaging.models import Conversation, Member, Message
from payments import events, services, tasks
from payments.ledger import ledger_reconcile
from payments.models import AccountKind, JournalEntry, LedgerAccount, Transfer, WalletSettings
from superapp.core.errors import ApplicationError
from superapp.core.models import Event
from tests.core.test_realtime import next_event, open_socket
from tests.threads import run_together

from ..conftest import befriend
from .conftest import PIN, fund, with_pin

IDEM = "HTTP_IDEMPOTENCY_KEY"
BUBBLE_KEYS = {"transfer_id", "receiver_id", "amount", "currency", "note", "status"}
TRANSFER_KEYS = {
    "id",
    "sender_id",
    "receiver_id",
    "amount",
    "currency",
    "note",
    "status",
    "created_at",
    "expires_at",
    "resolved_at",
}


def _balance(user) -> int:
    row = LedgerAccount.objects.filter(kind=AccountKind.WALLET, owner=user).first()
    return row.balance if row else 0


def _events(user, type_: str) -> list[dict]:
    return list(Event.objects.filter(user=user, type=type_).order_by("seq").values_list("data", flat=True))


def _cursor(user) -> int:
    return Event.objects.filter(user=user).order_by("-seq").values_list("seq", flat=True).first() or 0


def _post(client, receiver, conv, amount=300, key="k", **extra):
    body = {"receiver_id": receiver.pk, "amount": amount, "pin": PIN, "note": "lunch"}
    if conv is not None:
        body["conversation_id"] = conv.pk
    body.update(extra)
    return client.post("/api/v1/payments/transfers", body, format="json", **{IDEM: key})


def _transfer(sender, receiver, conv, amount=300, pin=PIN):
    return services.transfer_create(
        sender_id=sender.pk,
        receiver_id=receiver.pk,
        amount=amount,
        pin=pin,
        note="lunch",
        conversation_id=conv.pk,
    )


def _refused(sender, receiver, conversation_id, code, status):
    """The transfer is refused with ``code`` before the PIN (a wrong PIN is sent: no try spent)
    and nothing is stored."""
    before = Message.objects.count()
    with pytest.raises(ApplicationError) as refused:
        services.transfer_create(
            sender_id=sender.pk,
            receiver_id=receiver.pk,
            amount=300,
            pin="000000",
            conversation_id=conversation_id,
        )
    assert (refused.value.code, refused.value.status_code) == (code, status)
    assert not Transfer.objects.exists() and Message.objects.count() == before
    settings_row = WalletSettings.objects.filter(user=sender).first()
    assert settings_row is None or settings_row.pin_failed_attempts == 0


@pytest.fixture
def team(payer, make_user):
    """A group owned by ``owner`` with the payer (alice), the receiver and two others. The payer
    and the receiver are not friends: inside a group a transfer does not need it (WeChat)."""
    owner, receiver, other, quiet = (make_user() for _ in range(4))
    for member in (payer, receiver, other, quiet):
        befriend(owner, member)
    conv = chat_services.group_create(
        creator_id=owner.pk, name="team", member_ids=[payer.pk, receiver.pk, other.pk, quiet.pk]
    )
    return conv, payer, receiver, other, [owner, payer, receiver, other, quiet]


# --- sending ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_group_transfer_is_one_bubble_every_member_sees(client_for, team):
    conv, alice, receiver, _other, everyone = team
    before = {u.pk: _cursor(u) for u in everyone}
    response = _post(client_for(alice), receiver, conv)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == TRANSFER_KEYS
    assert (body["sender_id"], body["receiver_id"], body["amount"], body["status"]) == (
        alice.pk,
        receiver.pk,
        300,
        "pending",
    )
    assert (_balance(alice), _balance(receiver)) == (9_700, 0)
    assert LedgerAccount.objects.get(kind=AccountKind.TRANSFER_ESCROW, owner=alice).balance == 300
    # One message, in the group; no direct chat was made for the pair.
    (bubble,) = Message.objects.filter(kind="transfer")
    assert bubble.conversation_id == conv.pk and bubble.sender_id == alice.pk
    assert bubble.content == {
        "transfer_id": body["id"],
        "receiver_id": receiver.pk,
        "amount": 300,
        "currency": "CNY",
        "note": "lunch",
        "status": "pending",
    }
    assert not Conversation.objects.filter(kind="direct").exists()
    for user in everyone:
        page = client_for(user).get("/api/v1/sync", {"since": before[user.pk]}).json()
        types = [e["type"] for e in page["events"]]
        parties = user.pk in (alice.pk, receiver.pk)
        # Every member: the bubble; the two parties: the wallet's event too, in the same commit.
        assert types == (["message.new", events.TRANSFER_CREATED] if parties else ["message.new"])
        new = page["events"][0]["data"]
        assert new["conversation_id"] == conv.pk and new["kind"] == "transfer"
        assert new["content"]["receiver_id"] == receiver.pk
        history = client_for(user).get(f"/api/v1/messaging/conversations/{conv.pk}/messages").json()
        assert history["messages"][-1]["content"]["transfer_id"] == body["id"]
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_only_the_receiver_accepts_and_the_group_sees_it(client_for, team):
    conv, alice, receiver, other, everyone = team
    transfer_id = _post(client_for(alice), receiver, conv).json()["id"]
    # Another member sees the bubble, but the transfer is not theirs: 404 like a stranger.
    assert client_for(other).get(f"/api/v1/payments/transfers/{transfer_id}").status_code == 404
    for action in ("accept", "return"):
        answer = client_for(other).post(
            f"/api/v1/payments/transfers/{transfer_id}/{action}", **{IDEM: action}
        )
        assert answer.status_code == 404, answer.json()
        own = client_for(alice).post(f"/api/v1/payments/transfers/{transfer_id}/{action}", **{IDEM: action})
        assert own.status_code == 403 and own.json()["error"]["code"] == "not_receiver"
    before = {u.pk: _cursor(u) for u in everyone}
    accepted = client_for(receiver).post(f"/api/v1/payments/transfers/{transfer_id}/accept", **{IDEM: "a"})
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert (_balance(alice), _balance(receiver), _balance(other)) == (9_700, 300, 0)
    for user in everyone:
        page = client_for(user).get("/api/v1/sync", {"since": before[user.pk]}).json()
        types = [e["type"] for e in page["events"]]
        tail = [events.TRANSFER_ACCEPTED] if user.pk in (alice.pk, receiver.pk) else []
        assert types == [chat_events.MESSAGE_UPDATED, chat_events.MESSAGE_NEW, *tail]
        assert page["events"][0]["data"]["content"]["status"] == "accepted"
        assert page["events"][1]["data"]["content"] == {
            "event": "transfer.accepted",
            "actor_id": receiver.pk,
            "transfer_id": transfer_id,
            "message_seq": page["events"][0]["data"]["seq"],
        }
    again = client_for(receiver).post(f"/api/v1/payments/transfers/{transfer_id}/return", **{IDEM: "r"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "transfer_not_pending"


@pytest.mark.django_db
def test_the_receiver_returns_it(client_for, team):
    conv, alice, receiver, other, _everyone = team
    transfer_id = _post(client_for(alice), receiver, conv).json()["id"]
    returned = client_for(receiver).post(f"/api/v1/payments/transfers/{transfer_id}/return", **{IDEM: "r"})
    assert returned.status_code == 200 and returned.json()["status"] == "refunded"
    assert (_balance(alice), _balance(receiver)) == (10_000, 0)
    assert _events(other, chat_events.MESSAGE_UPDATED)[-1]["content"]["status"] == "refunded"
    notice = Message.objects.filter(conversation=conv, kind="system").order_by("-seq").first()
    assert (notice.content["event"], notice.content["actor_id"]) == ("transfer.returned", receiver.pk)


@pytest.mark.django_db
def test_auto_accept_in_a_group(team):
    conv, alice, receiver, other, _everyone = team
    befriend(alice, receiver)  # auto-accept takes a group transfer from a friend only (below)
    services.wallet_settings_update(user_id=receiver.pk, auto_accept_transfers=True)
    transfer = _transfer(alice, receiver, conv)
    assert transfer.status == "accepted" and transfer.resolved_at == transfer.created_at
    assert (_balance(alice), _balance(receiver)) == (9_700, 300)
    # One entry wallet to wallet, as a direct auto-accepted transfer; no escrow at all.
    (entry,) = JournalEntry.objects.filter(reference__startswith=f"transfer:{transfer.pk}:")
    assert entry.kind == "transfer_send"
    assert not LedgerAccount.objects.filter(kind=AccountKind.TRANSFER_ESCROW).exists()
    (bubble,) = Message.objects.filter(kind="transfer")
    assert bubble.conversation_id == conv.pk and bubble.content["status"] == "accepted"
    (seen,) = [e for e in _events(other, chat_events.MESSAGE_NEW) if e["kind"] == "transfer"]
    assert seen["content"]["status"] == "accepted" and seen["content"]["receiver_id"] == receiver.pk
    assert not _events(other, chat_events.MESSAGE_UPDATED)
    assert [e["status"] for e in _events(receiver, events.TRANSFER_CREATED)] == ["pending"]
    assert [e["status"] for e in _events(receiver, events.TRANSFER_ACCEPTED)] == ["accepted"]
    assert not _events(other, events.TRANSFER_CREATED)


@pytest.mark.django_db
def test_auto_accept_waits_for_a_stranger_unless_the_receiver_accepts_strangers(client_for, team):
    """Auto-accept with a member who is not a friend: the money waits in escrow until the
    receiver accepts it (a stranger in a shared group cannot put money in a wallet with no step
    to refuse it), unless the receiver accepts strangers (the setting of the direct chat's rule)."""
    conv, alice, receiver, other, _everyone = team
    services.wallet_settings_update(user_id=receiver.pk, auto_accept_transfers=True)
    waiting = _transfer(alice, receiver, conv)
    assert waiting.status == "pending" and waiting.resolved_at is None
    assert (_balance(alice), _balance(receiver)) == (9_700, 0)
    assert LedgerAccount.objects.get(kind=AccountKind.TRANSFER_ESCROW, owner=alice).balance == 300
    assert [e["status"] for e in _events(receiver, events.TRANSFER_CREATED)] == ["pending"]
    assert not _events(receiver, events.TRANSFER_ACCEPTED)
    (bubble,) = [e for e in _events(other, chat_events.MESSAGE_NEW) if e["kind"] == "transfer"]
    assert bubble["content"]["status"] == "pending"
    # The receiver decides, as without auto-accept.
    taken = client_for(receiver).post(f"/api/v1/payments/transfers/{waiting.pk}/accept", **{IDEM: "a"})
    assert taken.status_code == 200 and _balance(receiver) == 300
    # A receiver who accepts strangers: auto-accepted, one entry wallet to wallet.
    chat_services.settings_update(user_id=receiver.pk, changes={"allow_strangers": True})
    at_once = _transfer(alice, receiver, conv, amount=200)
    assert at_once.status == "accepted" and at_once.resolved_at == at_once.created_at
    (entry,) = JournalEntry.objects.filter(reference__startswith=f"transfer:{at_once.pk}:")
    assert entry.kind == "transfer_send"
    assert (_balance(alice), _balance(receiver)) == (9_500, 500)
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_expiry_refund_tells_the_group(team):
    conv, alice, receiver, other, everyone = team
    transfer = _transfer(alice, receiver, conv, amount=400)
    Transfer.objects.filter(pk=transfer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ApplicationError) as late:
        services.transfer_accept(user_id=receiver.pk, transfer_id=transfer.pk)
    assert late.value.code == "transfer_expired"
    assert tasks.refund_expired_transfers.delay().get() == 1
    assert tasks.refund_expired_transfers.delay().get() == 0  # twice: refunded once, told once
    assert (_balance(alice), _balance(receiver)) == (10_000, 0)
    assert Transfer.objects.get(pk=transfer.pk).status == "refunded"
    for user in everyone:
        (updated,) = _events(user, chat_events.MESSAGE_UPDATED)
        assert updated["conversation_id"] == conv.pk and updated["content"]["status"] == "refunded"
        notices = [e["content"] for e in _events(user, chat_events.MESSAGE_NEW) if e["kind"] == "system"]
        assert [(n.get("event"), n.get("actor_id")) for n in notices][-1] == ("transfer.expired", None)
    assert len(_events(alice, events.TRANSFER_REFUNDED)) == 1
    assert len(_events(receiver, events.TRANSFER_REFUNDED)) == 1
    assert not _events(other, events.TRANSFER_REFUNDED)
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_the_same_request_twice_pays_once(client_for, team):
    conv, alice, receiver, _other, _everyone = team
    client = client_for(alice)
    first, second = _post(client, receiver, conv, key="same"), _post(client, receiver, conv, key="same")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() and second.headers.get("Idempotent-Replayed") == "true"
    assert Transfer.objects.count() == 1 and Message.objects.filter(kind="transfer").count() == 1
    assert _balance(alice) == 9_700
    # The same key for another target (the direct chat instead of the group) is refused.
    befriend(alice, receiver)
    other_body = _post(client, receiver, None, key="same")
    assert other_body.status_code == 409 and other_body.json()["error"]["code"] == "idempotency_key_reused"
    # So is the same key with another group both are in.
    owner = _everyone[0]
    second = chat_services.group_create(creator_id=owner.pk, name="two", member_ids=[alice.pk, receiver.pk])
    other_group = _post(client, receiver, second, key="same")
    assert other_group.status_code == 409
    assert other_group.json()["error"]["code"] == "idempotency_key_reused"
    assert Transfer.objects.count() == 1 and _balance(alice) == 9_700


# --- who -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_non_members_and_unknown_groups_are_404(client_for, team, carol):
    conv, alice, receiver, _other, _everyone = team
    with_pin(carol)
    fund(carol, 1_000)
    # A payer outside the group learns nothing about it: the same answer as no group at all.
    _refused(carol, receiver, conv.pk, "conversation_not_found", 404)
    _refused(alice, receiver, 999_999, "conversation_not_found", 404)
    # A receiver outside the group.
    _refused(alice, carol, conv.pk, "member_not_found", 404)
    response = _post(client_for(carol), receiver, conv)
    assert response.status_code == 404 and response.json()["error"]["code"] == "conversation_not_found"
    bad = _post(client_for(alice), receiver, conv, key="bad", conversation_id=0)
    assert bad.status_code == 400 and "conversation_id" in bad.json()["error"]["fields"]
    own = _post(client_for(alice), alice, conv, key="self")
    assert own.status_code == 400 and own.json()["error"]["code"] == "self_transfer"
    assert (_balance(alice), _balance(carol)) == (10_000, 1_000)


@pytest.mark.django_db
def test_members_who_left_can_neither_pay_nor_be_paid(team):
    conv, alice, receiver, other, _everyone = team
    chat_services.group_remove_member(user_id=receiver.pk, conversation_id=conv.pk, target_id=receiver.pk)
    _refused(alice, receiver, conv.pk, "member_not_found", 404)
    chat_services.group_remove_member(user_id=alice.pk, conversation_id=conv.pk, target_id=alice.pk)
    _refused(alice, other, conv.pk, "conversation_not_found", 404)
    assert _balance(alice) == 10_000


@pytest.mark.django_db
def test_a_block_either_way_refuses_it(team):
    conv, alice, receiver, other, _everyone = team
    account_services.block_add(user=receiver, target_id=alice.pk)
    _refused(alice, receiver, conv.pk, "blocked", 403)
    account_services.block_add(user=alice, target_id=other.pk)
    _refused(alice, other, conv.pk, "blocked", 403)
    account_services.block_remove(user=receiver, target_id=alice.pk)
    assert _transfer(alice, receiver, conv).status == "pending"


@pytest.mark.django_db
def test_an_inactive_receiver_is_refused(team):
    conv, alice, receiver, _other, _everyone = team
    type(receiver).objects.filter(pk=receiver.pk).update(is_active=False)
    _refused(alice, receiver, conv.pk, "user_not_found", 404)


@pytest.mark.django_db
def test_the_receiver_leaving_before_the_lock_rolls_everything_back(team, monkeypatch):
    """The receiver leaves just after the early check passed: the membership is checked again
    under the conversation's lock, and the refusal rolls back the money, the transfer and the
    message together."""
    conv, alice, receiver, _other, _everyone = team
    real_check = chat_selectors.payment_receiver_check

    def check_then_leave(**kwargs):
        target = real_check(**kwargs)
        chat_services.group_remove_member(user_id=receiver.pk, conversation_id=conv.pk, target_id=receiver.pk)
        return target

    monkeypatch.setattr(chat_selectors, "payment_receiver_check", check_then_leave)
    with pytest.raises(ApplicationError) as refused:
        _transfer(alice, receiver, conv)
    assert refused.value.code == "member_not_found"
    assert not Transfer.objects.exists() and not Message.objects.filter(kind="transfer").exists()
    assert not JournalEntry.objects.filter(kind="transfer_send").exists()
    assert _balance(alice) == 10_000
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_a_receiver_who_left_still_decides(client_for, team):
    """The money was sent to the member, not to the group: leaving does not forfeit it. The
    bubble's update goes to the members still there, the wallet's event to both parties."""
    conv, alice, receiver, other, _everyone = team
    transfer = _transfer(alice, receiver, conv)
    chat_services.group_remove_member(user_id=receiver.pk, conversation_id=conv.pk, target_id=receiver.pk)
    accepted = client_for(receiver).post(f"/api/v1/payments/transfers/{transfer.pk}/accept", **{IDEM: "a"})
    assert accepted.status_code == 200 and _balance(receiver) == 300
    assert _events(other, chat_events.MESSAGE_UPDATED)[-1]["content"]["status"] == "accepted"
    assert not _events(receiver, chat_events.MESSAGE_UPDATED)
    assert _events(receiver, events.TRANSFER_ACCEPTED)[-1]["id"] == transfer.pk


@pytest.mark.django_db
def test_a_newcomer_learns_nothing_of_a_transfer_from_before_they_joined(client_for, team, make_user):
    """A member who joined after the bubble (a newcomer, or a member who left and came back)
    cannot see it in history, so accepting it tells them nothing: no ``message.updated`` (it
    carries the amount and the note), no notice line in events or in history, no last message
    in the conversation list. The members who see the bubble get both, as before."""
    conv, alice, receiver, other, everyone = team
    owner = everyone[0]
    transfer = services.transfer_create(
        sender_id=alice.pk,
        receiver_id=receiver.pk,
        amount=777,
        pin=PIN,
        note="secret rent",
        conversation_id=conv.pk,
    )
    newcomer = make_user()
    befriend(owner, newcomer)
    chat_services.group_invite(user_id=owner.pk, conversation_id=conv.pk, user_ids=[newcomer.pk])
    chat_services.group_remove_member(user_id=other.pk, conversation_id=conv.pk, target_id=other.pk)
    chat_services.group_invite(user_id=owner.pk, conversation_id=conv.pk, user_ids=[other.pk])
    members = [*everyone, newcomer]
    before = {u.pk: _cursor(u) for u in members}
    accepted = client_for(receiver).post(f"/api/v1/payments/transfers/{transfer.pk}/accept", **{IDEM: "a"})
    assert accepted.status_code == 200 and _balance(receiver) == 777
    for user in members:
        sees = user.pk not in (newcomer.pk, other.pk)
        client = client_for(user)
        page = client.get("/api/v1/sync", {"since": before[user.pk]}).json()
        types = [e["type"] for e in page["events"]]
        tail = [events.TRANSFER_ACCEPTED] if user.pk in (alice.pk, receiver.pk) else []
        assert types == ([chat_events.MESSAGE_UPDATED, chat_events.MESSAGE_NEW, *tail] if sees else [])
        seen = client.get(f"/api/v1/messaging/conversations/{conv.pk}/messages").json()["messages"]
        about = [m for m in seen if m["content"].get("transfer_id") == transfer.pk]
        assert [m["kind"] for m in about] == (["transfer", "system"] if sees else [])
        last = client.get(f"/api/v1/messaging/conversations/{conv.pk}").json()["last_message"]
        if sees:
            assert last["content"]["event"] == "transfer.accepted"
        else:
            assert last is None
    # Nothing the newcomer was ever sent names the transfer.
    stream = Event.objects.filter(user=newcomer).values_list("data", flat=True)
    told = [d for d in stream if "secret rent" in str(d) or d.get("content", {}).get("transfer_id")]
    assert not told, told
    # Their own messages still show: the line about the transfer is the only one hidden.
    chat_services.message_send(
        sender_id=newcomer.pk, client_msg_id="hello", kind="text", text="hello", conversation_id=conv.pk
    )
    seen = client_for(newcomer).get(f"/api/v1/messaging/conversations/{conv.pk}/messages").json()
    assert [m["content"].get("event") or m["text"] for m in seen["messages"]] == [
        "member.invited",
        "member.left",
        "member.invited",
        "hello",
    ]


@pytest.mark.django_db
def test_a_notice_line_a_member_cannot_see_never_stays_unread(client_for, team, make_user):
    """A line hidden from a newcomer (about a transfer from before they joined) is never unread for
    them: a newcomer who had read everything has read it too, one who had not does not count it,
    and gets to zero by reading what they see."""
    conv, alice, receiver, _other, everyone = team
    owner = everyone[0]
    first = services.transfer_create(
        sender_id=alice.pk, receiver_id=receiver.pk, amount=100, pin=PIN, conversation_id=conv.pk
    )
    second = services.transfer_create(
        sender_id=alice.pk, receiver_id=receiver.pk, amount=200, pin=PIN, conversation_id=conv.pk
    )
    caught_up, behind = make_user(), make_user()
    for user in (caught_up, behind):
        befriend(owner, user)
        chat_services.group_invite(user_id=owner.pk, conversation_id=conv.pk, user_ids=[user.pk])
    chat_services.message_send(
        sender_id=owner.pk, client_msg_id="hi", kind="text", text="welcome", conversation_id=conv.pk
    )
    welcome = Message.objects.get(sender=owner, client_msg_id="hi").seq
    chat_services.conversation_mark_read(user_id=caught_up.pk, conversation_id=conv.pk, seq=welcome)

    def unread(user) -> int:
        return client_for(user).get(f"/api/v1/messaging/conversations/{conv.pk}").json()["unread_count"]

    behind_before = unread(behind)  # "welcome", and their own "invited" line
    assert unread(caught_up) == 0 and behind_before == 2
    for transfer in (first, second):
        ok = client_for(receiver).post(
            f"/api/v1/payments/transfers/{transfer.pk}/accept", **{IDEM: f"a{transfer.pk}"}
        )
        assert ok.status_code == 200
    last = Conversation.objects.get(pk=conv.pk).last_seq
    assert last == welcome + 2  # the two notice lines, both hidden from the newcomers
    assert unread(caught_up) == 0
    assert unread(receiver) == 0 and unread(owner) == 2  # the members who see them
    # The one who had not read "welcome" does not count the lines they cannot see either; reading
    # "welcome" (the last message they can see) leaves nothing unread, and the mark reported is
    # the last seq.
    assert unread(behind) == behind_before
    # Deleting such a line for oneself (the API allows it) does not subtract it twice.
    chat_services.message_hide(user_id=behind.pk, conversation_id=conv.pk, seq=last)
    assert unread(behind) == behind_before
    mark = chat_services.conversation_mark_read(user_id=behind.pk, conversation_id=conv.pk, seq=welcome)
    assert (mark, unread(behind)) == (last, 0)
    # A member who sees what comes after keeps it unread: the mark stays where it was put.
    assert (
        chat_services.conversation_mark_read(user_id=owner.pk, conversation_id=conv.pk, seq=welcome)
        == welcome
    )
    assert unread(owner) == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    "extra",
    [
        {"conversation_id": "abc"},
        {"conversation_id": 1.5},
        {"conversation_id": -3},
        {"conversation_id": None},
        {"conversation_id": 10**30},
        {"conversation_id": 2**63},
        {"conversation_id": 2**31},
        {"conversation_id": [1]},
        {"conversation_id": {"a": 1}},
        {"conversation_id": True},
        {"receiver_id": 10**30},
        {"receiver_id": 2**63},
        {"receiver_id": -5},
        {"receiver_id": "x"},
        {"receiver_id": None},
        {"receiver_id": 2.5},
    ],
)
def test_bad_ids_are_a_4xx_in_the_one_error_shape(client_for, team, extra):
    conv, alice, receiver, _other, _everyone = team
    response = _post(client_for(alice), receiver, conv, **extra)
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert set(response.json()) == {"error"}
    assert set(response.json()["error"]) == {"code", "message", "fields"}
    assert not Transfer.objects.exists() and _balance(alice) == 10_000


@pytest.mark.django_db
def test_another_pairs_direct_chat_is_404_without_a_hint(client_for, payer, bob, carol):
    befriend(bob, carol)
    chat = chat_services.message_send(
        sender_id=bob.pk, client_msg_id="x", kind="text", to_user_id=carol.pk, text="x"
    ).message.conversation
    for receiver in (bob, carol):
        response = _post(client_for(payer), receiver, chat, key=f"k{receiver.pk}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "conversation_not_found"
    assert not Transfer.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("blocker", ["receiver", "payer"])
def test_a_block_between_the_check_and_the_lock_refuses_it(team, monkeypatch, blocker):
    """A block committed after the early check (while the PIN is judged and the money moves)
    is seen under the group's lock, as the direct chat's rule is: everything rolls back."""
    conv, alice, receiver, _other, _everyone = team
    real_check = chat_selectors.payment_receiver_check

    def check_then_block(**kwargs):
        target = real_check(**kwargs)
        if blocker == "receiver":
            account_services.block_add(user=receiver, target_id=alice.pk)
        else:
            account_services.block_add(user=alice, target_id=receiver.pk)
        return target

    monkeypatch.setattr(chat_selectors, "payment_receiver_check", check_then_block)
    with pytest.raises(ApplicationError) as refused:
        _transfer(alice, receiver, conv)
    assert (refused.value.code, refused.value.status_code) == ("blocked", 403)
    assert not Transfer.objects.exists() and not Message.objects.filter(kind="transfer").exists()
    assert not JournalEntry.objects.filter(kind="transfer_send").exists()
    assert _balance(alice) == 10_000 and ledger_reconcile().ok


@pytest.mark.django_db
def test_a_block_between_the_check_and_the_lock_refuses_a_direct_transfer_too(payer, bob, monkeypatch):
    """The direct path, for comparison: its rule runs again under the direct chat's lock."""
    befriend(payer, bob)
    chat_services.message_send(
        sender_id=payer.pk, client_msg_id="x", kind="text", to_user_id=bob.pk, text="x"
    )
    real_check = chat_selectors.direct_message_check
    calls: list[int] = []

    def check_then_block(**kwargs):
        real_check(**kwargs)
        if not calls:  # the early check only; the one under the lock sees the block
            calls.append(1)
            account_services.block_add(user=bob, target_id=payer.pk)

    monkeypatch.setattr(chat_selectors, "direct_message_check", check_then_block)
    with pytest.raises(ApplicationError) as refused:
        services.transfer_create(sender_id=payer.pk, receiver_id=bob.pk, amount=10, pin=PIN)
    assert refused.value.code == "blocked" and len(calls) == 1
    assert not Transfer.objects.exists() and _balance(payer) == 10_000


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["accept", "return", "expire"])
def test_a_dissolved_group_still_settles(team, how):
    conv, alice, receiver, _other, everyone = team
    transfer = _transfer(alice, receiver, conv, amount=50)
    chat_services.group_dissolve(user_id=everyone[0].pk, conversation_id=conv.pk)
    if how == "accept":
        services.transfer_accept(user_id=receiver.pk, transfer_id=transfer.pk)
        assert (_balance(alice), _balance(receiver)) == (9_950, 50)
    elif how == "return":
        services.transfer_return(user_id=receiver.pk, transfer_id=transfer.pk)
        assert (_balance(alice), _balance(receiver)) == (10_000, 0)
    else:
        Transfer.objects.filter(pk=transfer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert services.transfer_refund_if_expired(transfer_id=transfer.pk)
        assert (_balance(alice), _balance(receiver)) == (10_000, 0)
    assert _events(receiver, events.TRANSFER_ACCEPTED if how == "accept" else events.TRANSFER_REFUNDED)
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_a_direct_chat_id_is_the_direct_path(client_for, payer, bob, carol):
    """``conversation_id`` of a direct chat behaves as a transfer made with the peer's id: the
    bubble in that chat, the direct chat's rule (friends, no block), and only its peer."""
    alice = payer
    befriend(alice, bob)
    chat = chat_services.message_send(
        sender_id=alice.pk, client_msg_id="hi", kind="text", to_user_id=bob.pk, text="hi"
    ).message.conversation
    response = _post(client_for(alice), bob, chat)
    assert response.status_code == 201, response.json()
    (bubble,) = Message.objects.filter(kind="transfer")
    assert bubble.conversation_id == chat.pk and bubble.content["receiver_id"] == bob.pk
    assert Conversation.objects.filter(kind="direct").count() == 1
    _refused_direct = _post(client_for(alice), carol, chat, key="carol")
    assert _refused_direct.status_code == 404
    assert _refused_direct.json()["error"]["code"] == "member_not_found"
    account_services.block_add(user=bob, target_id=alice.pk)
    blocked = _post(client_for(alice), bob, chat, key="blocked")
    assert blocked.status_code == 403 and blocked.json()["error"]["code"] == "blocked"
    account_services.block_remove(user=bob, target_id=alice.pk)
    account_services.friend_remove(user=alice, friend_id=bob.pk)
    strangers = _post(client_for(alice), bob, chat, key="strangers")
    assert strangers.status_code == 403 and strangers.json()["error"]["code"] == "not_friends"
    assert Transfer.objects.count() == 1 and _balance(alice) == 9_700


# --- statements ------------------------------------------------------------------------------


def _statements(fn) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        fn()
    return [q["sql"] for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]


@pytest.mark.django_db(transaction=True)
def test_statements_of_the_direct_and_the_group_path(payer, bob, make_user, settings):
    """Pinned: the direct path keeps its 9 statements (the chat rule, the payer's lock, the reads,
    the booking with the transfer row, the direct chat's id, the claim, the rule under the lock,
    the message, the events); the group path has 10: its check (membership, then blocks)
    instead of the rule, no direct chat to look up, the members and the blocks again under the
    lock instead of the rule. Auto-accepted transfers between friends who have been paid before;
    between strangers 11 (their transfer waits for the receiver's accept)."""
    settings.MESSAGING_PUSH_ENABLED = False
    alice = payer
    owner, receiver, stranger = make_user(), make_user(), make_user()
    befriend(alice, bob)
    befriend(alice, receiver)  # auto-accept in a group needs friends (or a receiver open to strangers)
    for member in (alice, receiver, bob, stranger):
        befriend(owner, member)
    conv = chat_services.group_create(
        creator_id=owner.pk, name="g", member_ids=[alice.pk, receiver.pk, bob.pk, stranger.pk]
    )
    for user, where in ((bob, None), (receiver, conv.pk), (stranger, conv.pk)):
        services.wallet_settings_update(user_id=user.pk, auto_accept_transfers=True)
        services.transfer_create(  # warm up: accounts made, the direct chat too
            sender_id=alice.pk, receiver_id=user.pk, amount=10, pin=PIN, conversation_id=where
        )

    direct = _statements(
        lambda: services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=10, pin=PIN)
    )
    assert len(direct) == 9, direct
    group = _statements(
        lambda: services.transfer_create(
            sender_id=alice.pk, receiver_id=receiver.pk, amount=10, pin=PIN, conversation_id=conv.pk
        )
    )
    assert len(group) == 10, group
    # The group's check comes first, before the payer's lock (hot statements may be prepared,
    # so only this one's text is looked at).
    assert "messaging_member" in group[0] and "FOR UPDATE" not in group[0]
    # Between members who are not friends, one more: the receiver's "accepts strangers" (here
    # no, so the transfer waits for the receiver although it auto-accepts).
    strangers = _statements(
        lambda: services.transfer_create(
            sender_id=alice.pk, receiver_id=stranger.pk, amount=10, pin=PIN, conversation_id=conv.pk
        )
    )
    assert len(strangers) == 11, strangers
    assert "messaging_usersettings" in strangers[2]
    assert Transfer.objects.filter(receiver=stranger, status="pending").count() == 2
    assert Message.objects.filter(conversation=conv, kind="transfer").count() == 4  # 2 warm-ups, 2 measured
    assert ledger_reconcile().ok


# --- the socket ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_group_sees_it_live_and_the_receiver_gets_the_wallet_event(alice, make_user):
    owner, receiver, other = [await sync_to_async(make_user)() for _ in range(3)]

    def setup():
        with_pin(alice)
        fund(alice, 1_000)
        for member in (alice, receiver, other):
            befriend(owner, member)
        return chat_services.group_create(
            creator_id=owner.pk, name="live", member_ids=[alice.pk, receiver.pk, other.pk]
        )

    conv = await sync_to_async(setup)()
    sockets = {u.pk: await open_socket(u) for u in (alice, receiver, other, owner)}
    transfer = await sync_to_async(_transfer)(alice, receiver, conv, 500)
    for user_id, ws in sockets.items():
        new = await next_event(ws, "message.new")
        assert new["data"]["kind"] == "transfer" and new["data"]["conversation_id"] == conv.pk
        assert set(new["data"]["content"]) == BUBBLE_KEYS
        assert new["data"]["content"]["receiver_id"] == receiver.pk
        assert new["data"]["content"]["status"] == "pending"
        if user_id in (alice.pk, receiver.pk):
            created = await next_event(ws, events.TRANSFER_CREATED)
            assert created["cursor"] == new["cursor"] + 1
            assert set(created["data"]) == TRANSFER_KEYS and created["data"]["id"] == transfer.pk
    await sync_to_async(services.transfer_accept)(user_id=receiver.pk, transfer_id=transfer.pk)
    for ws in sockets.values():
        updated = await next_event(ws, "message.updated")
        assert updated["data"]["content"]["status"] == "accepted"
        assert updated["data"]["content"]["receiver_id"] == receiver.pk
    for ws in sockets.values():
        await ws.disconnect()
    assert await sync_to_async(lambda: ledger_reconcile().ok)()


# --- concurrency -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_group_transfers_both_ways_while_the_group_chats(make_user, settings, caplog):
    """Threads send group transfers both ways (accepted, returned, auto-accepted) while members
    chat in the same group: the group's row is taken after the ledger, as a message's path takes
    it before the heads, so no deadlock (no retry logged), one bubble per transfer, a gapless
    sequence, money conserved."""
    settings.PAYMENTS_LIMITS = {"unverified": {"per_payment": 10**9, "per_day": 10**12}}
    settings.MESSAGING_PUSH_ENABLED = False  # eager push tasks in threads race on Celery's flags
    owner, alice, bob, carol, *crowd = [make_user() for _ in range(7)]
    for user in (alice, bob, carol):
        with_pin(user)
        fund(user, 50_000)
    for member in (alice, bob, carol, *crowd):
        befriend(owner, member)
    conv = chat_services.group_create(
        creator_id=owner.pk, name="busy", member_ids=[alice.pk, bob.pk, carol.pk, *(u.pk for u in crowd)]
    )
    befriend(alice, carol)  # so that alice's transfers to carol are auto-accepted
    services.wallet_settings_update(user_id=carol.pk, auto_accept_transfers=True)

    def pay(src, dst, seed):
        def job():
            rng = random.Random(seed)
            for i in range(12):
                transfer = services.transfer_create(
                    sender_id=src.pk,
                    receiver_id=dst.pk,
                    amount=rng.randint(1, 500),
                    pin=PIN,
                    conversation_id=conv.pk,
                )
                if transfer.status == "pending":
                    decide = services.transfer_accept if i % 3 else services.transfer_return
                    decide(user_id=dst.pk, transfer_id=transfer.pk)

        return job

    def chat(user, tag):
        def job():
            for i in range(20):
                chat_services.message_send(
                    sender_id=user.pk,
                    client_msg_id=f"{tag}-{i}",
                    kind="text",
                    text="hi",
                    conversation_id=conv.pk,
                )

        return job

    jobs = [
        pay(alice, bob, 1),
        pay(bob, alice, 2),
        pay(alice, carol, 3),
        chat(crowd[0], "x"),
        chat(owner, "o"),
    ]
    with caplog.at_level(logging.WARNING, logger="payments"):
        errors = run_together(jobs, timeout=180).raised
    assert not errors, errors[:3]
    assert not [r for r in caplog.records if r.getMessage() == "payments.retry"]
    assert Transfer.objects.count() == 36 and not Transfer.objects.filter(status="pending").exists()
    bubbles = Message.objects.filter(kind="transfer")
    assert all(m.conversation_id == conv.pk for m in bubbles)
    assert sorted(m.content["transfer_id"] for m in bubbles) == sorted(
        Transfer.objects.values_list("id", flat=True)
    )
    stored = dict(Transfer.objects.values_list("id", "status"))
    assert all(m.content["status"] == stored[m.content["transfer_id"]] for m in bubbles)
    group = Conversation.objects.get(pk=conv.pk)
    seqs = list(Message.objects.filter(conversation=group).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, group.last_seq + 1))
    wallets = LedgerAccount.objects.filter(kind=AccountKind.WALLET).values_list("balance", flat=True)
    escrows = LedgerAccount.objects.filter(kind=AccountKind.TRANSFER_ESCROW).values_list("balance", flat=True)
    assert sum(wallets) == 150_000 and set(escrows) <= {0} and min(wallets) >= 0
    assert ledger_reconcile().ok


@pytest.mark.django_db(transaction=True)
def test_the_receiver_leaving_while_transfers_are_sent(make_user, settings):
    """A real race (threads): the receiver leaves while the payer sends 30 transfers. Every
    refusal is ``member_not_found``; no bubble comes after the "left" line; every transfer has
    its bubble and the money is conserved."""
    settings.PAYMENTS_LIMITS = {"unverified": {"per_payment": 10**9, "per_day": 10**12}}
    settings.MESSAGING_PUSH_ENABLED = False
    owner, alice, receiver = make_user(), make_user(), make_user()
    with_pin(alice)
    fund(alice, 100_000)
    for member in (alice, receiver):
        befriend(owner, member)
    conv = chat_services.group_create(creator_id=owner.pk, name="r", member_ids=[alice.pk, receiver.pk])
    refused: list[str] = []
    paying = threading.Event()

    def pay() -> None:
        for i in range(30):
            if i == 3:
                paying.set()  # the leave now races the remaining 27
            try:
                _transfer(alice, receiver, conv, amount=1)
            except ApplicationError as exc:
                refused.append(exc.code)

    def leave() -> None:
        assert paying.wait(timeout=30), "the payer never started"
        time.sleep(0.01)
        chat_services.group_remove_member(user_id=receiver.pk, conversation_id=conv.pk, target_id=receiver.pk)

    errors = run_together([pay, leave], timeout=60).raised
    assert not errors, errors[:3]
    assert set(refused) <= {"member_not_found"} and len(refused) < 28
    left = Message.objects.get(conversation=conv, kind="system", content__event="member.left")
    assert not Message.objects.filter(conversation=conv, kind="transfer", seq__gt=left.seq).exists()
    assert Transfer.objects.count() == Message.objects.filter(kind="transfer").count() == 30 - len(refused)
    escrow = LedgerAccount.objects.get(kind=AccountKind.TRANSFER_ESCROW, owner=alice).balance
    assert _balance(alice) + escrow == 100_000
    assert ledger_reconcile().ok


@pytest.mark.django_db(transaction=True)
def test_transfers_settle_while_members_leave_and_come_back(make_user, settings, caplog):
    """Threads: transfers around the group, accepted, returned and refunded at expiry, while a
    member is removed and invited again and the group renamed. No error, no lock retry, money
    conserved; and whoever joined again after a bubble is never told of its settlement."""
    settings.PAYMENTS_LIMITS = {"unverified": {"per_payment": 10**9, "per_day": 10**12}}
    settings.MESSAGING_PUSH_ENABLED = False
    owner, a, b, c = (make_user() for _ in range(4))
    for user in (a, b, c):
        with_pin(user)
        fund(user, 50_000)
        befriend(owner, user)
    conv = chat_services.group_create(creator_id=owner.pk, name="c", member_ids=[a.pk, b.pk, c.pk])

    def pay(src, dst):
        def job() -> None:
            for i in range(15):
                try:
                    transfer = _transfer(src, dst, conv, amount=5)
                except ApplicationError as exc:
                    assert exc.code in ("member_not_found", "conversation_not_found"), exc.code
                    continue
                if i % 3 == 0:
                    Transfer.objects.filter(pk=transfer.pk).update(
                        expires_at=timezone.now() - timedelta(seconds=1)
                    )
                    services.transfers_refund_expired()
                elif i % 3 == 1:
                    services.transfer_accept(user_id=dst.pk, transfer_id=transfer.pk)
                else:
                    services.transfer_return(user_id=dst.pk, transfer_id=transfer.pk)

        return job

    def churn() -> None:
        for _ in range(10):
            chat_services.group_remove_member(user_id=owner.pk, conversation_id=conv.pk, target_id=c.pk)
            chat_services.group_invite(user_id=owner.pk, conversation_id=conv.pk, user_ids=[c.pk])
            chat_services.group_update(user_id=owner.pk, conversation_id=conv.pk, name="n")

    with caplog.at_level(logging.WARNING, logger="payments"):
        errors = run_together([pay(a, b), pay(b, c), pay(c, a), churn], timeout=120).raised
    assert not errors, errors[:3]
    assert not [r for r in caplog.records if r.getMessage() == "payments.retry"]
    assert not Transfer.objects.filter(status="pending").exists()
    wallets = LedgerAccount.objects.filter(kind=AccountKind.WALLET).values_list("balance", flat=True)
    assert sum(wallets) == 150_000
    # c's last visible range starts at the last invite: no update of an older bubble in it.
    joined = Member.objects.get(conversation=conv, user=c).joined_seq
    last_invite = Event.objects.filter(user=c, type=chat_events.CONVERSATION_NEW).order_by("-seq").first()
    late = Event.objects.filter(user=c, type=chat_events.MESSAGE_UPDATED, seq__gt=last_invite.seq)
    assert all(e.data["seq"] > joined for e in late)
    assert ledger_reconcile().ok
