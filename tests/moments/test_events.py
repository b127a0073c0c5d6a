"""Every Moments event type: who gets it, and the exact shape of its payload (one test each)."""

from __future__ import annotations

import pytest

from moments import events, services
from superapp.core.events import events_since
from tests.conftest import befriend

from .conftest import publish

pytestmark = pytest.mark.django_db

USER_BRIEF = {"id", "handle", "display_name", "avatar_thumb_url"}
POST_KEYS = {
    "id", "author", "kind", "text", "media", "link", "location", "created_at", "is_mine", "visibility",
    "liked_by_me", "likes", "comments", "more_comments",
}  # fmt: skip
COMMENT_KEYS = {"id", "post_id", "author", "text", "reply_to_id", "reply_to_user", "created_at"}
NOTIFICATION_KEYS = {"id", "kind", "actor", "post", "comment", "created_at", "read"}
POST_BRIEF_KEYS = {"id", "author_id", "kind", "excerpt", "thumb_url"}


def only_event(user, type_):
    found = [e for e in events_since(user_id=user.pk, since=0, limit=500)["events"] if e["type"] == type_]
    assert len(found) == 1, found
    assert set(found[0]) == {"type", "cursor", "data"}
    return found[0]["data"]


@pytest.fixture
def pair(alice, bob):
    befriend(alice, bob)
    return alice, bob


def test_post_created(pair):
    alice, bob = pair
    post = publish(alice, "hi", location=services.Place(name="Home"))
    data = only_event(alice, events.POST_CREATED)
    assert set(data) == {"post"}
    assert set(data["post"]) == POST_KEYS
    assert set(data["post"]["author"]) == USER_BRIEF
    assert data["post"]["id"] == post.pk and data["post"]["visibility"] == "friends"
    assert data["post"]["location"] == {"name": "Home", "latitude": None, "longitude": None}
    assert events_since(user_id=bob.pk, since=0)["events"] == []  # friends are not told of each post


def test_post_deleted(pair):
    alice, _ = pair
    post = publish(alice)
    services.post_delete(user=alice, post_id=post.pk)
    assert only_event(alice, events.POST_DELETED) == {"post_id": post.pk}


def test_post_hidden_and_unhidden(pair):
    alice, _ = pair
    post = publish(alice)
    services.post_hide(post_id=post.pk, by=None, reason="spam")
    assert only_event(alice, events.POST_HIDDEN) == {"post_id": post.pk, "reason": "spam"}
    services.post_unhide(post_id=post.pk, by=None)
    assert only_event(alice, events.POST_UNHIDDEN) == {"post_id": post.pk}


def test_interaction(pair):
    alice, bob = pair
    post = publish(alice, "x" * 150)
    comment = services.comment_create(user=bob, post_id=post.pk, text="nice")
    data = only_event(alice, events.INTERACTION)
    assert set(data) == {"notification", "unread_count"}
    assert data["unread_count"] == 1
    notification = data["notification"]
    assert set(notification) == NOTIFICATION_KEYS
    assert notification["kind"] == "comment" and notification["read"] is False
    assert set(notification["actor"]) == USER_BRIEF and notification["actor"]["id"] == bob.pk
    assert set(notification["post"]) == POST_BRIEF_KEYS
    assert notification["post"]["excerpt"] == "x" * 99 + "…"
    assert set(notification["comment"]) == COMMENT_KEYS and notification["comment"]["id"] == comment.pk


def test_interaction_removed(pair):
    alice, bob = pair
    post = publish(alice)
    services.like_add(user=bob, post_id=post.pk)
    services.like_remove(user=bob, post_id=post.pk)
    data = only_event(alice, events.INTERACTION_REMOVED)
    assert set(data) == {"notification_ids", "unread_count"}
    assert len(data["notification_ids"]) == 1 and data["unread_count"] == 0


def test_notifications_read(pair):
    alice, _ = pair
    services.notifications_mark_read(user=alice, up_to_id=7)
    assert only_event(alice, events.NOTIFICATIONS_READ) == {"up_to_id": 7, "unread_count": 0}


def test_settings_updated(pair):
    alice, _ = pair
    services.moments_settings_update(user=alice, visible_days=180)
    assert only_event(alice, events.SETTINGS_UPDATED) == {"visible_days": 180}


def test_friend_settings_updated(pair):
    alice, bob = pair
    services.friend_setting_update(owner=alice, target_id=bob.pk, hide_their_posts=True)
    assert only_event(alice, events.FRIEND_SETTINGS_UPDATED) == {
        "user_id": bob.pk, "hide_my_posts": False, "hide_their_posts": True,
    }  # fmt: skip


def test_every_event_type_has_a_shape_test():
    tested = {
        events.POST_CREATED: test_post_created,
        events.POST_DELETED: test_post_deleted,
        events.POST_HIDDEN: test_post_hidden_and_unhidden,
        events.POST_UNHIDDEN: test_post_hidden_and_unhidden,
        events.INTERACTION: test_interaction,
        events.INTERACTION_REMOVED: test_interaction_removed,
        events.NOTIFICATIONS_READ: test_notifications_read,
        events.SETTINGS_UPDATED: test_settings_updated,
        events.FRIEND_SETTINGS_UPDATED: test_friend_settings_updated,
    }
    assert set(tested) == set(events.ALL_TYPES)


def test_nothing_is_published_when_the_write_rolls_back(pair, django_capture_on_commit_callbacks):
    alice, _ = pair
    from django.db import transaction

    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        publish(alice)
        raise RuntimeError("boom")
    assert callbacks == []
    assert events_since(user_id=alice.pk, since=0)["events"] == []
