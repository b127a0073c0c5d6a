"""Push scheduling through the per-second due sets: one Celery task per set, never a lost push."""

from __future__ import annotations

import pytest

from messaging import notifications, tasks

from .conftest import direct, group, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def scheduled(monkeypatch):
    """Tasks handed to Celery (not run): ``[kwargs]``."""
    calls = []
    monkeypatch.setattr(tasks.push_flush, "apply_async", lambda kwargs, countdown: calls.append(kwargs))
    return calls


@pytest.fixture
def pushed(monkeypatch):
    out = []
    monkeypatch.setattr(notifications, "deliver", lambda *, user_id, fields: out.append(user_id))
    return out


@pytest.fixture
def one_second(monkeypatch):
    """Every send in the same second (the due set's name comes from the clock)."""
    monkeypatch.setattr(notifications.time, "time", lambda: 1_800_000_000.25)


def test_sends_of_one_second_share_one_task(
    alice, bob, carol, scheduled, pushed, one_second, django_capture_on_commit_callbacks
):
    to_bob, to_carol = direct(alice, bob), direct(alice, carol)
    scheduled.clear()
    with django_capture_on_commit_callbacks(execute=True):
        send(alice, to_bob, text="hi bob")
        send(alice, to_carol, text="hi carol")
    assert len(scheduled) == 1  # the second send found the set: no Celery call
    assert scheduled[0]["user_ids"] == [bob.pk]
    assert tasks.push_flush(**scheduled[0]) == 2  # the set brought carol along
    assert sorted(pushed) == [bob.pk, carol.pk]
    assert not notifications._due_store().client.exists(scheduled[0]["due_set"])  # drained


def test_group_send_puts_every_offline_member_in_the_set(
    alice, bob, carol, scheduled, pushed, one_second, django_capture_on_commit_callbacks
):
    conv = group(alice, bob, carol, name="Team")
    scheduled.clear()
    with django_capture_on_commit_callbacks(execute=True):
        send(alice, conv, text="all of you")
    assert [sorted(call["user_ids"]) for call in scheduled] == [sorted([bob.pk, carol.pk])]
    tasks.push_flush(**scheduled[0])
    assert sorted(pushed) == [bob.pk, carol.pk]


def test_a_user_re_added_during_the_drain_is_not_lost(alice, bob, scheduled, one_second, monkeypatch):
    store = notifications._due_store()
    key = notifications._due_key(store.prefix, 1_800_000_000)
    store.add(keys=[key], args=[60_000, bob.pk])
    flushed = []

    def flush(user_id, *, forget_due):
        flushed.append(user_id)
        if len(flushed) == 1:  # a newer window of bob's lands in this set while we flush him
            store.add(keys=[key], args=[60_000, bob.pk])
        return False

    monkeypatch.setattr(notifications, "flush_user", flush)
    notifications.flush_due([], key)
    assert flushed == [bob.pk, bob.pk]
    assert not store.client.exists(key)


def test_a_task_that_dies_midway_resumes_on_redelivery(alice, bob, carol, one_second, monkeypatch):
    store = notifications._due_store()
    key = notifications._due_key(store.prefix, 1_800_000_000)
    store.add(keys=[key], args=[60_000, bob.pk, carol.pk])

    def dying(user_id, *, forget_due):
        raise SystemExit("worker lost")

    monkeypatch.setattr(notifications, "flush_user", dying)
    with pytest.raises(SystemExit):
        notifications.flush_due([], key)
    flushed = []
    monkeypatch.setattr(notifications, "flush_user", lambda user_id, *, forget_due: flushed.append(user_id))
    notifications.flush_due([], key)  # the redelivered task
    assert sorted(flushed) == [bob.pk, carol.pk]


def test_without_the_due_set_each_window_gets_its_own_task(
    alice, bob, scheduled, monkeypatch, django_capture_on_commit_callbacks
):
    conv = direct(alice, bob)
    store = notifications._due_store()

    def broken(**_kwargs):
        raise ConnectionError("redis away")

    monkeypatch.setattr(notifications, "_due_store", lambda: notifications._DueStore(
        client=store.client, prefix=store.prefix, add=broken, remove_seen=store.remove_seen))  # fmt: skip
    scheduled.clear()
    with django_capture_on_commit_callbacks(execute=True):
        send(alice, conv, text="still pushed")
    assert scheduled == [{"user_ids": [bob.pk]}]


def test_a_failed_enqueue_drops_the_set_so_the_next_send_schedules(
    alice, bob, carol, pushed, one_second, monkeypatch, django_capture_on_commit_callbacks
):
    to_bob, to_carol = direct(alice, bob), direct(alice, carol)
    calls = []

    def broker(kwargs, countdown):
        calls.append(kwargs)
        if len(calls) == 1:
            raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.push_flush, "apply_async", broker)
    with django_capture_on_commit_callbacks(execute=True):
        send(alice, to_bob, text="lost with the broker")  # the send itself succeeds
    assert not notifications._due_store().client.exists(calls[0]["due_set"])
    with django_capture_on_commit_callbacks(execute=True):
        send(alice, to_carol, text="schedules again")
    assert len(calls) == 2 and calls[1]["user_ids"] == [carol.pk]
    assert tasks.push_flush(**calls[1]) == 1
    assert pushed == [carol.pk]
