"""The per-user event stream: REST sync, paging, expiry, ordering under concurrency."""

import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from superapp.core import events
from superapp.core.models import Event, UserStream
from tests.core.test_errors import assert_error


def publish(user_ids, n=1, type_="test.event"):
    for i in range(n):
        with transaction.atomic():
            events.publish(user_ids=user_ids, type=type_, data={"i": i})


@pytest.mark.django_db(transaction=True)
def test_publish_outside_a_transaction_is_refused(alice):
    with pytest.raises(RuntimeError):
        events.publish(user_ids=[alice.pk], type="x", data={})


@pytest.mark.django_db
def test_push_happens_only_on_commit(alice, django_capture_on_commit_callbacks, monkeypatch):
    pushed = []
    monkeypatch.setattr(events, "push_envelopes", pushed.extend)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        publish([alice.pk])
    assert pushed == []  # stored, but the doorbell waits for the commit
    assert Event.objects.count() == 1
    for callback in callbacks:
        callback()
    assert pushed == [(alice.pk, {"type": "test.event", "cursor": 1, "data": {"i": 0}})]


@pytest.mark.django_db
def test_each_user_has_their_own_cursor(alice, bob):
    publish([alice.pk], 2)
    publish([alice.pk, bob.pk])
    assert [e["cursor"] for e in events.events_since(user_id=alice.pk, since=0)["events"]] == [1, 2, 3]
    assert [e["cursor"] for e in events.events_since(user_id=bob.pk, since=0)["events"]] == [1]


@pytest.mark.django_db
def test_publish_many_locks_once_and_numbers_in_order(alice, bob):
    with transaction.atomic():
        events.publish_many(
            specs=[
                events.EventSpec(user_ids=[alice.pk, bob.pk], type="a", data={}),
                events.EventSpec(user_ids=[alice.pk], type="b", data={}),
            ]
        )
    assert [(e["type"], e["cursor"]) for e in events.events_since(user_id=alice.pk, since=0)["events"]] == [
        ("a", 1),
        ("b", 2),
    ]
    assert UserStream.objects.get(user=alice).last_seq == 2
    assert UserStream.objects.get(user=bob).last_seq == 1


@pytest.mark.django_db
def test_rest_sync_pages_without_gaps(client_for, alice):
    publish([alice.pk], 7)
    client = client_for(alice)
    seen, since = [], 0
    while True:
        body = client.get("/api/v1/sync", {"since": since, "limit": 3}).json()
        seen += [e["cursor"] for e in body["events"]]
        since = body["cursor"]
        if not body["has_more"]:
            break
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    assert body["latest"] == 7
    empty = client.get("/api/v1/sync", {"since": 7}).json()
    assert empty == {"events": [], "cursor": 7, "has_more": False, "latest": 7}


@pytest.mark.django_db
def test_rest_sync_bad_input(client_for, api, alice):
    client = client_for(alice)
    assert "since" in assert_error(client.get("/api/v1/sync"), 400, "invalid")["fields"]
    assert_error(client.get("/api/v1/sync", {"since": -1}), 400, "invalid")
    assert_error(client.get("/api/v1/sync", {"since": "abc"}), 400, "invalid")
    assert_error(client.get("/api/v1/sync", {"since": 0, "limit": 10_000}), 400, "invalid")
    assert_error(client.get("/api/v1/sync", {"since": 5}), 400, "cursor_invalid")
    assert_error(api.get("/api/v1/sync", {"since": 0}), 401)


@pytest.mark.django_db
def test_rest_sync_shows_only_my_events(client_for, alice, bob):
    publish([bob.pk], 3)
    body = client_for(alice).get("/api/v1/sync", {"since": 0}).json()
    assert body["events"] == [] and body["latest"] == 0


@pytest.mark.django_db
def test_purged_events_make_old_cursors_expire(client_for, alice):
    publish([alice.pk], 3)
    Event.objects.filter(seq__lte=2).update(created_at=timezone.now() - timedelta(days=40))
    assert events.purge_events_older_than(days=30) == 2
    client = client_for(alice)
    assert_error(client.get("/api/v1/sync", {"since": 0}), 410, "cursor_expired")
    assert [e["cursor"] for e in client.get("/api/v1/sync", {"since": 2}).json()["events"]] == [3]
    Event.objects.all().delete()
    assert_error(client.get("/api/v1/sync", {"since": 1}), 410, "cursor_expired")
    assert client.get("/api/v1/sync", {"since": 3}).json()["events"] == []


@pytest.mark.django_db
def test_purge_task_runs(alice, settings):
    from superapp.core.tasks import purge_old_events

    publish([alice.pk], 2)
    Event.objects.update(created_at=timezone.now() - timedelta(days=settings.EVENT_RETENTION_DAYS + 1))
    assert purge_old_events.delay().get() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_publishers_never_leave_a_gap_a_reader_could_skip(alice, bob):
    """Many threads publish to the same users while a reader syncs: every cursor is seen once.

    A global auto-increment would let a later-committing smaller id slip behind a reader's
    cursor; the per-user locked sequence cannot.
    """
    assert connection.vendor == "postgresql"
    writers, per_writer = 8, 25
    seen: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(index):
        try:
            targets = [alice.pk, bob.pk] if index % 2 else [bob.pk, alice.pk]
            publish(targets, per_writer)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            close_old_connections()

    def reader():
        since = 0
        try:
            while not stop.is_set() or since < writers * per_writer:
                page = events.events_since(user_id=alice.pk, since=since, limit=50)
                seen.extend(e["cursor"] for e in page["events"])
                since = page["cursor"]
        finally:
            close_old_connections()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    reading = threading.Thread(target=reader)
    reading.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reading.join(timeout=60)
    assert not errors, errors
    assert seen == list(range(1, writers * per_writer + 1))
    assert UserStream.objects.get(user=bob).last_seq == writers * per_writer
