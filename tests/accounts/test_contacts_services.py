"""Contacts services: the shape of every event they publish, after-commit delivery, races.

Each event type has one payload-shape test. Concurrency tests use threads against PostgreSQL.
"""

from __future__ import annotations

import asyncio
import threading
import time
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import IntegrityError, connection, connections, transaction

from accounts import events as account_events
from accounts import selectors, services
from accounts.models import Block, ContactTag, FriendRequest, Friendship
from accounts.services import contacts
from superapp.core.errors import ApplicationError
from superapp.core.events import events_since
from tests.conftest import befriend
from tests.threads import run_together

PUBLIC_KEYS = {"id", "handle", "display_name", "avatar_url", "avatar_thumb_url", "region", "bio"}
REQUEST_KEYS = {"id", "from_user", "to_user", "note", "source", "status", "created_at"}


def stream(user) -> list[dict]:
    return events_since(user_id=user.pk, since=0, limit=500)["events"]


def last(user, type_: str) -> dict:
    matching = [e for e in stream(user) if e["type"] == type_]
    assert matching, f"no {type_} event for {user}"
    return matching[-1]["data"]


def assert_user_public(data: dict, user) -> None:
    assert set(data) == PUBLIC_KEYS
    assert data["id"] == user.pk and data["handle"] == user.handle


def assert_request_shape(data: dict, request: FriendRequest, status: str) -> None:
    assert set(data) == {"request"}
    payload = data["request"]
    assert set(payload) == REQUEST_KEYS
    assert payload["id"] == request.pk
    assert_user_public(payload["from_user"], request.from_user)
    assert_user_public(payload["to_user"], request.to_user)
    assert payload["status"] == status
    assert payload["note"] == request.note
    assert isinstance(payload["created_at"], str)


# --- one payload-shape test per event type -------------------------------------------------------


@pytest.mark.django_db
def test_request_received_and_sent_payloads(alice, bob):
    outcome = services.friend_request_send(from_user=alice, to_user_id=bob.pk, note="hi from the gym")
    assert not outcome.became_friends
    received = last(bob, account_events.REQUEST_RECEIVED)
    assert_request_shape(received, outcome.request, "pending")
    assert received["request"]["note"] == "hi from the gym" and received["request"]["source"] == "search"
    assert last(alice, account_events.REQUEST_SENT) == received
    assert [e["type"] for e in stream(bob)] == [account_events.REQUEST_RECEIVED]


@pytest.mark.django_db
def test_request_accepted_and_friend_added_payloads(alice, bob):
    request = services.friend_request_send(from_user=alice, to_user_id=bob.pk).request
    services.friend_request_accept(user=bob, request_id=request.pk, remark="Ali")
    assert_request_shape(last(alice, account_events.REQUEST_ACCEPTED), request, "accepted")
    assert account_events.REQUEST_ACCEPTED not in [e["type"] for e in stream(bob)]

    to_requester = last(alice, account_events.FRIEND_ADDED)
    assert set(to_requester) == {"friend", "remark", "source"}
    assert_user_public(to_requester["friend"], bob)
    assert to_requester["remark"] == "" and to_requester["source"] == "search"
    to_accepter = last(bob, account_events.FRIEND_ADDED)
    assert_user_public(to_accepter["friend"], alice)
    assert to_accepter["remark"] == "Ali"


@pytest.mark.django_db
def test_request_declined_payload(alice, bob):
    request = services.friend_request_send(from_user=alice, to_user_id=bob.pk).request
    services.friend_request_decline(user=bob, request_id=request.pk)
    assert_request_shape(last(bob, account_events.REQUEST_DECLINED), request, "declined")
    assert account_events.REQUEST_DECLINED not in [e["type"] for e in stream(alice)]


@pytest.mark.django_db
def test_friend_removed_payload(alice, bob):
    befriend(alice, bob)
    services.friend_remove(user=alice, friend_id=bob.pk)
    assert last(alice, account_events.FRIEND_REMOVED) == {"user_id": bob.pk}
    assert last(bob, account_events.FRIEND_REMOVED) == {"user_id": alice.pk}


@pytest.mark.django_db
def test_friend_updated_payload(alice, bob):
    befriend(alice, bob)
    tag_b = services.tag_create(owner=alice, name="B")
    tag_a = services.tag_create(owner=alice, name="A")
    services.friend_update(user=alice, friend_id=bob.pk, remark=" Bobby ", tag_ids=[tag_b.pk, tag_a.pk])
    assert last(alice, account_events.FRIEND_UPDATED) == {
        "user_id": bob.pk,
        "remark": "Bobby",
        "tag_ids": sorted([tag_a.pk, tag_b.pk]),
    }
    assert stream(bob) == []  # my remark and tags are mine alone


@pytest.mark.django_db
def test_a_friend_update_that_changes_nothing_tells_no_device(alice, bob):
    befriend(alice, bob)
    tag = services.tag_create(owner=alice, name="A")
    services.friend_update(user=alice, friend_id=bob.pk, remark="Bobby", tag_ids=[tag.pk])
    count = len(stream(alice))
    services.friend_update(user=alice, friend_id=bob.pk, remark=" Bobby ", tag_ids=[tag.pk])
    services.friend_update(user=alice, friend_id=bob.pk, remark="Bobby")
    services.friend_update(user=alice, friend_id=bob.pk, tag_ids=[tag.pk, tag.pk])
    services.friend_update(user=alice, friend_id=bob.pk)
    assert len(stream(alice)) == count
    services.friend_update(user=alice, friend_id=bob.pk, tag_ids=[])  # a real change: told
    assert len(stream(alice)) == count + 2
    assert last(alice, account_events.FRIEND_UPDATED) == {"user_id": bob.pk, "remark": "Bobby", "tag_ids": []}
    assert last(alice, account_events.TAGS_UPDATED) == {
        "tags": [{"id": tag.pk, "name": "A", "member_ids": []}]
    }


@pytest.mark.django_db(transaction=True)
def test_a_friend_update_racing_a_tag_edit_leaves_devices_told_the_truth(alice, bob, monkeypatch):
    """Another device empties a tag while a friend update puts the friend back in it: whichever
    commits last, the last thing the devices were told about the tag is what the database has."""
    befriend(alice, bob)
    tag = services.tag_create(owner=alice, name="A", member_ids=[bob.pk])
    real_own_tags = contacts._own_tags
    other_device: list = []

    def own_tags_while_another_device_edits(owner, tag_ids):
        other_device.append(
            threading.Thread(
                target=lambda: _closing(services.tag_update, owner=alice, tag_id=tag.pk, member_ids=[])
            )
        )
        other_device[0].start()
        time.sleep(0.5)  # without the friend update's tag locks, the edit commits in here
        return real_own_tags(owner, tag_ids)

    monkeypatch.setattr(contacts, "_own_tags", own_tags_while_another_device_edits)
    services.friend_update(user=alice, friend_id=bob.pk, tag_ids=[tag.pk])
    monkeypatch.undo()
    other_device[0].join(30)
    assert not other_device[0].is_alive()
    in_db = sorted(ContactTag.objects.get(pk=tag.pk).members.values_list("pk", flat=True))
    told = [
        e for e in stream(alice) if e["type"] in (account_events.FRIEND_UPDATED, account_events.TAGS_UPDATED)
    ]
    last_told = told[-1]
    if last_told["type"] == account_events.TAGS_UPDATED:
        assert last_told["data"]["tags"][0]["member_ids"] == in_db
    else:
        assert (tag.pk in last_told["data"]["tag_ids"]) == (bob.pk in in_db)


def _closing(call, **kwargs):
    try:
        call(**kwargs)
    finally:
        connections.close_all()


@pytest.mark.django_db
def test_tags_updated_payload(alice, bob, carol):
    befriend(alice, bob)
    befriend(alice, carol)
    family = services.tag_create(owner=alice, name="Family", member_ids=[carol.pk, bob.pk])
    assert last(alice, account_events.TAGS_UPDATED) == {
        "tags": [{"id": family.pk, "name": "Family", "member_ids": sorted([bob.pk, carol.pk])}]
    }
    services.tag_update(owner=alice, tag_id=family.pk, name="Kin", member_ids=[bob.pk])
    assert last(alice, account_events.TAGS_UPDATED) == {
        "tags": [{"id": family.pk, "name": "Kin", "member_ids": [bob.pk]}]
    }
    services.tag_delete(owner=alice, tag_id=family.pk)
    assert last(alice, account_events.TAGS_UPDATED) == {"tags": []}
    assert stream(bob) == [] and stream(carol) == []


@pytest.mark.django_db
def test_block_added_and_removed_payloads(alice, bob):
    services.block_add(user=alice, target_id=bob.pk)
    data = last(alice, account_events.BLOCK_ADDED)
    assert set(data) == {"user"}
    assert_user_public(data["user"], bob)
    services.block_remove(user=alice, target_id=bob.pk)
    assert last(alice, account_events.BLOCK_REMOVED) == {"user_id": bob.pk}
    assert stream(bob) == []  # the blocked user is never told


# --- after commit ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_events_are_stored_in_the_transaction_and_pushed_only_after_commit(
    alice, bob, django_capture_on_commit_callbacks
):
    with mock.patch("superapp.core.events.push_envelopes") as push:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.friend_request_send(from_user=alice, to_user_id=bob.pk, note="hi")
        push.assert_not_called()
        assert len(callbacks) == 1
        callbacks[0]()
    push.assert_called_once()
    envelopes = push.call_args.args[0]
    assert [(uid, env["type"], env["cursor"]) for uid, env in envelopes] == [
        (bob.pk, account_events.REQUEST_RECEIVED, 1),
        (alice.pk, account_events.REQUEST_SENT, 1),
    ]
    assert envelopes[0][1] == stream(bob)[0]


@pytest.mark.django_db
def test_committed_event_reaches_the_users_channel_group(alice, bob, django_capture_on_commit_callbacks):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"user.{bob.pk}", channel)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.friend_request_send(from_user=alice, to_user_id=bob.pk)
        for callback in callbacks:
            callback()

        async def receive():
            return await asyncio.wait_for(layer.receive(channel), timeout=2)

        message = async_to_sync(receive)()
        assert message == {"type": "event.push", "event": stream(bob)[0]}
    finally:
        async_to_sync(layer.group_discard)(f"user.{bob.pk}", channel)


@pytest.mark.django_db
def test_rolled_back_write_sends_and_stores_nothing(alice, bob, django_capture_on_commit_callbacks):
    with (
        mock.patch("superapp.core.events.push_envelopes") as push,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.friend_request_send(from_user=alice, to_user_id=bob.pk)
        raise RuntimeError("caller failed after the service")
    assert callbacks == []
    push.assert_not_called()
    assert stream(alice) == [] and stream(bob) == []
    assert not FriendRequest.objects.exists()


@pytest.mark.django_db
def test_refused_write_publishes_nothing(alice, bob, carol, django_capture_on_commit_callbacks):
    befriend(alice, bob)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(ApplicationError):
            services.tag_create(owner=alice, name="Mixed", member_ids=[bob.pk, carol.pk])
        with pytest.raises(ApplicationError):
            services.friend_request_send(from_user=alice, to_user_id=bob.pk)
    assert callbacks == []
    assert stream(alice) == []
    assert not ContactTag.objects.exists()


# --- rules the API tests do not reach ----------------------------------------------------------


@pytest.mark.django_db
def test_block_keeps_the_contact_but_ends_the_friendship(alice, bob):
    befriend(alice, bob)
    services.block_add(user=alice, target_id=bob.pk)
    assert selectors.is_contact(user_id=alice.pk, other_id=bob.pk)
    assert not selectors.are_friends(user_a=alice.pk, user_b=bob.pk)
    assert selectors.friend_ids(user_id=bob.pk) == set()


@pytest.mark.django_db
def test_block_declines_pending_requests(alice, bob, carol):
    services.friend_request_send(from_user=alice, to_user_id=bob.pk)
    services.friend_request_send(from_user=carol, to_user_id=bob.pk)
    services.block_add(user=bob, target_id=alice.pk)
    assert FriendRequest.objects.get(from_user=alice).status == "declined"
    assert FriendRequest.objects.get(from_user=carol).status == "pending"
    with pytest.raises(ApplicationError) as caught:
        services.friend_request_send(from_user=alice, to_user_id=bob.pk)
    assert (caught.value.status_code, caught.value.code) == (403, "cannot_add")


@pytest.mark.django_db
def test_tag_member_ids_only_from_own_tags(alice, bob, carol):
    befriend(alice, bob)
    befriend(carol, bob)
    mine = services.tag_create(owner=alice, name="Mine", member_ids=[bob.pk])
    theirs = services.tag_create(owner=carol, name="Theirs", member_ids=[bob.pk])
    assert selectors.tag_member_ids(owner_id=alice.pk, tag_ids=[mine.pk, theirs.pk, 999_999]) == {bob.pk}
    assert selectors.tag_member_ids(owner_id=alice.pk, tag_ids=[]) == set()


@pytest.mark.django_db
@pytest.mark.parametrize("who_blocks", ["owner", "member"])
def test_tag_members_in_a_block_are_left_out_until_unblocked(alice, bob, carol, who_blocks):
    befriend(alice, bob)
    befriend(alice, carol)
    tag = services.tag_create(owner=alice, name="Close", member_ids=[bob.pk, carol.pk])
    blocker, blocked = (alice, bob) if who_blocks == "owner" else (bob, alice)
    services.block_add(user=blocker, target_id=blocked.pk)
    assert selectors.tag_member_ids(owner_id=alice.pk, tag_ids=[tag.pk]) == {carol.pk}
    assert set(tag.members.values_list("pk", flat=True)) == {bob.pk, carol.pk}  # kept for later
    services.block_remove(user=blocker, target_id=blocked.pk)
    assert selectors.tag_member_ids(owner_id=alice.pk, tag_ids=[tag.pk]) == {bob.pk, carol.pk}


@pytest.mark.django_db
def test_friend_update_with_someone_elses_tag_changes_nothing(alice, bob, carol):
    befriend(alice, bob)
    theirs = ContactTag.objects.create(owner=carol, name="Theirs")
    with pytest.raises(ApplicationError) as caught:
        services.friend_update(user=alice, friend_id=bob.pk, remark="new", tag_ids=[theirs.pk])
    assert caught.value.fields == {"tag_ids": ["Unknown tag."]}
    assert list(theirs.members.all()) == []


# --- races (threads on PostgreSQL) -------------------------------------------------------------


def _in_thread(target, results: dict, key: str) -> threading.Thread:
    def run():
        try:
            results[key] = target()
        except ApplicationError as exc:
            results[key] = exc.code
        except IntegrityError:
            results[key] = "integrity_error"
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_until_someone_waits_for_a_lock(timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the second writer never waited for the first one's lock")


def _hold_open(write, holding: threading.Event, release: threading.Event):
    def run():
        with transaction.atomic():
            result = write()
            holding.set()
            assert release.wait(20)
        return result

    return run


@pytest.mark.django_db(transaction=True)
def test_decline_racing_an_accept_cannot_undo_the_friendship(alice, bob):
    request = FriendRequest.objects.create(from_user=alice, to_user=bob)
    holding, release, results = threading.Event(), threading.Event(), {}
    accept = _in_thread(
        _hold_open(lambda: services.friend_request_accept(user=bob, request_id=request.pk), holding, release),
        results,
        "accept",
    )
    assert holding.wait(20)
    decline = _in_thread(
        lambda: services.friend_request_decline(user=bob, request_id=request.pk), results, "decline"
    )
    _wait_until_someone_waits_for_a_lock()
    release.set()
    accept.join(20)
    decline.join(20)

    assert results["decline"] == "request_closed"
    request.refresh_from_db()
    assert request.status == "accepted"
    assert Friendship.objects.count() == 2
    assert account_events.REQUEST_DECLINED not in [e["type"] for e in stream(bob)]


@pytest.mark.django_db(transaction=True)
def test_concurrent_tags_with_the_same_name_conflict_cleanly(alice):
    holding, release, results = threading.Event(), threading.Event(), {}
    first = _in_thread(
        _hold_open(lambda: services.tag_create(owner=alice, name="Family").pk, holding, release),
        results,
        "first",
    )
    assert holding.wait(20)
    second = _in_thread(lambda: services.tag_create(owner=alice, name="Family").pk, results, "second")
    _wait_until_someone_waits_for_a_lock()
    release.set()
    first.join(20)
    second.join(20)

    assert results["second"] == "tag_exists"
    assert list(ContactTag.objects.values_list("pk", flat=True)) == [results["first"]]


@pytest.mark.django_db(transaction=True)
def test_concurrent_tag_rename_to_the_same_name_conflicts_cleanly(alice):
    one = ContactTag.objects.create(owner=alice, name="One")
    two = ContactTag.objects.create(owner=alice, name="Two")
    holding, release, results = threading.Event(), threading.Event(), {}
    first = _in_thread(
        _hold_open(
            lambda: services.tag_update(owner=alice, tag_id=one.pk, name="Same").name, holding, release
        ),
        results,
        "first",
    )
    assert holding.wait(20)
    second = _in_thread(
        lambda: services.tag_update(owner=alice, tag_id=two.pk, name="Same").name, results, "second"
    )
    _wait_until_someone_waits_for_a_lock()
    release.set()
    first.join(20)
    second.join(20)

    assert results == {"first": "Same", "second": "tag_exists"}
    assert sorted(ContactTag.objects.values_list("name", flat=True)) == ["Same", "Two"]


@pytest.mark.django_db(transaction=True)
def test_crossing_requests_make_one_friendship(alice, bob):
    def send(a, b):
        return lambda: services.friend_request_send(from_user=a, to_user_id=b.pk).became_friends

    outcome = run_together([send(alice, bob), send(bob, alice)], timeout=20)

    assert outcome.raised == [], outcome.raised
    assert sorted(outcome.results) == [False, True]
    assert Friendship.objects.count() == 2
    assert not FriendRequest.objects.filter(status="pending").exists()
    assert selectors.are_friends(user_a=alice.pk, user_b=bob.pk)


@pytest.mark.django_db(transaction=True)
def test_block_racing_a_request_leaves_no_pending_request(alice, bob):
    holding, release, results = threading.Event(), threading.Event(), {}
    blocker = _in_thread(
        _hold_open(lambda: services.block_add(user=bob, target_id=alice.pk).pk, holding, release),
        results,
        "block",
    )
    assert holding.wait(20)
    sender = _in_thread(
        lambda: services.friend_request_send(from_user=alice, to_user_id=bob.pk).became_friends,
        results,
        "send",
    )
    _wait_until_someone_waits_for_a_lock()
    release.set()
    blocker.join(20)
    sender.join(20)

    assert results["send"] == "cannot_add"
    assert not FriendRequest.objects.exists()
    assert Block.objects.filter(blocker=bob, blocked=alice).exists()
