"""Likes, comments, replies and the "new interactions" list over REST.

Each endpoint: success, bad input, someone else's object (404/403); list query counts pinned.
"""

from __future__ import annotations

from functools import partial

import pytest

from moments import services
from moments.models import Comment, Like, Notification
from superapp.core.events import events_since
from tests.conftest import befriend
from tests.core.test_errors import assert_error
from tests.threads import run_together

from .conftest import publish

pytestmark = pytest.mark.django_db

POSTS = "/api/v1/moments/posts"
NOTIFICATIONS = "/api/v1/moments/notifications"


def events_of(user, type_=None):
    found = events_since(user_id=user.pk, since=0, limit=500)["events"]
    return [e for e in found if type_ is None or e["type"] == type_]


@pytest.fixture
def post(alice, bob):
    befriend(alice, bob)
    return publish(alice, "a post")


# --- likes -------------------------------------------------------------------------------------


def test_like_is_idempotent_and_notifies_the_author_once(client_for, alice, bob, post):
    client = client_for(bob)
    assert client.put(f"{POSTS}/{post.pk}/like").status_code == 204
    assert client.put(f"{POSTS}/{post.pk}/like").status_code == 204
    assert Like.objects.filter(post=post, user=bob).count() == 1
    assert Notification.objects.filter(recipient=alice).count() == 1
    (event,) = events_of(alice, "moments.interaction")
    assert event["data"]["notification"]["kind"] == "like"
    assert event["data"]["unread_count"] == 1
    assert client.get(f"{POSTS}/{post.pk}").json()["liked_by_me"] is True


def test_liking_ones_own_post_notifies_nobody(client_for, alice, post):
    assert client_for(alice).put(f"{POSTS}/{post.pk}/like").status_code == 204
    assert not Notification.objects.exists()


def test_unlike_removes_the_notification(client_for, alice, bob, post):
    client = client_for(bob)
    client.put(f"{POSTS}/{post.pk}/like")
    notification_id = Notification.objects.get().pk
    assert client.delete(f"{POSTS}/{post.pk}/like").status_code == 204
    assert not Like.objects.exists() and not Notification.objects.exists()
    (removed,) = events_of(alice, "moments.interaction.removed")
    assert removed["data"] == {"notification_ids": [notification_id], "unread_count": 0}
    assert client.delete(f"{POSTS}/{post.pk}/like").status_code == 204  # nothing to take back


def test_like_someone_elses_invisible_or_unknown_post(client_for, carol, post):
    assert_error(client_for(carol).put(f"{POSTS}/{post.pk}/like"), 404)
    assert_error(client_for(carol).delete(f"{POSTS}/{post.pk}/like"), 404)
    assert_error(client_for(carol).put(f"{POSTS}/999999/like"), 404)


@pytest.mark.django_db(transaction=True)
def test_concurrent_double_like_is_one_like(alice, bob):
    """Two devices like at the same moment: one like, one notification, no error (Postgres)."""
    befriend(alice, bob)
    post = publish(alice)

    def like():
        services.like_add(user=bob, post_id=post.pk)

    outcome = run_together([like] * 4)
    assert outcome.raised == []
    assert Like.objects.filter(post=post, user=bob).count() == 1
    assert Notification.objects.filter(recipient=alice).count() == 1


@pytest.mark.django_db(transaction=True)
def test_like_racing_a_delete_never_fails_with_a_server_error(alice, bob):
    from superapp.core.errors import NotFound

    befriend(alice, bob)

    def like(post_id):
        services.like_add(user=bob, post_id=post_id)

    def delete(post_id):
        services.post_delete(user=alice, post_id=post_id)

    for _ in range(5):
        post = publish(alice)
        outcome = run_together([partial(like, post.pk), partial(delete, post.pk)])
        outcomes = [
            "ok" if error is None else "404" if isinstance(error, NotFound) else repr(error)
            for error in outcome.errors
        ]
        assert set(outcomes) <= {"ok", "404"}, outcomes
    assert not Like.objects.exists()


# --- comments ----------------------------------------------------------------------------------


def test_comment_and_reply_notify_who_they_concern(client_for, alice, bob, carol, post):
    befriend(alice, carol)
    befriend(bob, carol)
    first = client_for(bob).post(f"{POSTS}/{post.pk}/comments", {"text": " nice "}, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["text"] == "nice" and first.json()["reply_to_user"] is None
    reply = client_for(carol).post(
        f"{POSTS}/{post.pk}/comments", {"text": "agreed", "reply_to_id": first.json()["id"]}, format="json"
    )
    assert reply.status_code == 201, reply.content
    assert reply.json()["reply_to_id"] == first.json()["id"]
    assert reply.json()["reply_to_user"]["handle"] == "bob"
    # alice: a comment by bob, a comment by carol; bob: a reply by carol.
    assert [(e["data"]["notification"]["kind"], e["data"]["notification"]["actor"]["handle"])
            for e in events_of(alice, "moments.interaction")] == [("comment", "bob"), ("comment", "carol")]  # fmt: skip
    (to_bob,) = events_of(bob, "moments.interaction")
    assert to_bob["data"]["notification"]["kind"] == "reply"
    assert to_bob["data"]["notification"]["comment"]["text"] == "agreed"


def test_reply_to_the_author_is_one_reply_notification(client_for, alice, bob, post):
    mine = services.comment_create(user=alice, post_id=post.pk, text="thanks all")
    client_for(bob).post(f"{POSTS}/{post.pk}/comments", {"text": "yw", "reply_to_id": mine.pk}, format="json")
    assert [e["data"]["notification"]["kind"] for e in events_of(alice, "moments.interaction")] == ["reply"]


def test_reply_is_not_notified_to_someone_who_cannot_see_it(client_for, alice, bob, carol, post):
    befriend(alice, carol)  # carol and bob are not friends: bob's reply is invisible to carol
    first = services.comment_create(user=carol, post_id=post.pk, text="hi")
    # bob cannot see carol's comment either, so he cannot answer it.
    response = client_for(bob).post(
        f"{POSTS}/{post.pk}/comments", {"text": "x", "reply_to_id": first.pk}, format="json"
    )
    assert_error(response, 404, "reply_to_not_found")
    befriend(bob, carol)
    services.friend_setting_update(owner=alice, target_id=carol.pk, hide_my_posts=True)  # carol lost the post
    services.comment_create(user=bob, post_id=post.pk, text="x", reply_to_id=first.pk)
    assert events_of(carol, "moments.interaction") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "x" * 501}, "text"),
        ({"text": "x", "reply_to_id": "a"}, "reply_to_id"),
    ],
)
def test_comment_bad_input(client_for, bob, post, body, field):
    error = assert_error(client_for(bob).post(f"{POSTS}/{post.pk}/comments", body, format="json"), 400)
    assert field in error["fields"]
    assert not Comment.objects.exists()


def test_reply_to_a_comment_of_another_post(client_for, alice, bob, post):
    other = publish(alice, "other")
    theirs = services.comment_create(user=alice, post_id=other.pk, text="x")
    response = client_for(bob).post(
        f"{POSTS}/{post.pk}/comments", {"text": "x", "reply_to_id": theirs.pk}, format="json"
    )
    assert_error(response, 404, "reply_to_not_found")


def test_comment_on_an_invisible_post(client_for, carol, post):
    assert_error(client_for(carol).post(f"{POSTS}/{post.pk}/comments", {"text": "x"}, format="json"), 404)
    assert_error(client_for(carol).get(f"{POSTS}/{post.pk}/comments"), 404)


def test_delete_own_comment_and_any_comment_on_own_post(client_for, alice, bob, carol, post):
    befriend(alice, carol)
    befriend(bob, carol)
    by_bob = services.comment_create(user=bob, post_id=post.pk, text="bob")
    by_carol = services.comment_create(user=carol, post_id=post.pk, text="carol")
    reply = services.comment_create(user=carol, post_id=post.pk, text="re", reply_to_id=by_bob.pk)
    # carol sees bob's comment but may not delete it; a stranger sees nothing.
    assert_error(client_for(carol).delete(f"/api/v1/moments/comments/{by_bob.pk}"), 403, "not_author")
    assert client_for(bob).delete(f"/api/v1/moments/comments/{by_bob.pk}").status_code == 204
    assert client_for(alice).delete(f"/api/v1/moments/comments/{by_carol.pk}").status_code == 204
    reply.refresh_from_db()
    assert reply.reply_to_id is None and reply.reply_to_user_id == bob.pk  # still says whom it answered
    assert list(Comment.objects.values_list("pk", flat=True)) == [reply.pk]
    assert not Notification.objects.filter(comment_id__in=[by_bob.pk, by_carol.pk]).exists()
    assert_error(client_for(alice).delete("/api/v1/moments/comments/999999"), 404)


def test_delete_comment_someone_cannot_see(client_for, bob, post, make_user):
    comment = services.comment_create(user=bob, post_id=post.pk, text="x")
    stranger = make_user(handle="stranger")
    assert_error(client_for(stranger).delete(f"/api/v1/moments/comments/{comment.pk}"), 404)


def test_comment_list_query_count(client_for, alice, bob, post, django_assert_num_queries):
    client = client_for(alice)
    for n in (2, 6):
        while Comment.objects.count() < n:
            services.comment_create(user=bob, post_id=post.pk, text="x")
        # auth, the post's visibility, the page (comments with their authors)
        with django_assert_num_queries(3):
            response = client.get(f"{POSTS}/{post.pk}/comments")
        assert len(response.json()["results"]) == n


# --- notifications -------------------------------------------------------------------------------


def test_notification_list_unread_count_and_mark_read(client_for, alice, bob, post):
    client = client_for(alice)
    services.like_add(user=bob, post_id=post.pk)
    services.comment_create(user=bob, post_id=post.pk, text="x")
    assert client.get(f"{NOTIFICATIONS}/unread-count").json() == {"unread_count": 2}
    listed = client.get(NOTIFICATIONS).json()["results"]
    assert [n["kind"] for n in listed] == ["comment", "like"]
    assert all(n["read"] is False and n["post"]["id"] == post.pk for n in listed)

    response = client.post(f"{NOTIFICATIONS}/read", {"up_to_id": listed[1]["id"]}, format="json")
    assert response.json() == {"unread_count": 1}
    assert client.post(f"{NOTIFICATIONS}/read", {}, format="json").json() == {"unread_count": 0}
    assert all(n["read"] for n in client.get(NOTIFICATIONS).json()["results"])
    reads = events_of(alice, "moments.notifications.read")
    assert [e["data"] for e in reads] == [
        {"up_to_id": listed[1]["id"], "unread_count": 1},
        {"up_to_id": None, "unread_count": 0},
    ]


def test_notifications_are_private(client_for, alice, bob, post):
    services.like_add(user=bob, post_id=post.pk)
    assert client_for(bob).get(NOTIFICATIONS).json()["results"] == []
    assert client_for(bob).get(f"{NOTIFICATIONS}/unread-count").json() == {"unread_count": 0}
    # Marking "up to" someone else's notification touches only one's own.
    client_for(bob).post(f"{NOTIFICATIONS}/read", {"up_to_id": Notification.objects.get().pk}, format="json")
    assert client_for(alice).get(f"{NOTIFICATIONS}/unread-count").json() == {"unread_count": 1}


@pytest.mark.parametrize("body", [{"up_to_id": "x"}, {"up_to_id": 0}])
def test_mark_read_bad_input(client_for, alice, body):
    error = assert_error(client_for(alice).post(f"{NOTIFICATIONS}/read", body, format="json"), 400)
    assert "up_to_id" in error["fields"]


def test_notifications_of_a_hidden_post_disappear(client_for, alice, bob, post):
    services.like_add(user=bob, post_id=post.pk)
    services.post_hide(post_id=post.pk, by=None, reason="spam")
    client = client_for(alice)
    assert client.get(NOTIFICATIONS).json()["results"] == []
    assert client.get(f"{NOTIFICATIONS}/unread-count").json() == {"unread_count": 0}
    assert events_of(alice, "moments.interaction.removed")[-1]["data"]["unread_count"] == 0
    services.post_unhide(post_id=post.pk, by=None)
    assert client.get(f"{NOTIFICATIONS}/unread-count").json() == {"unread_count": 1}


def test_notification_list_query_count(client_for, alice, make_user, django_assert_num_queries):
    client = client_for(alice)
    for n in (2, 6):
        while Notification.objects.count() < n:
            friend = make_user()
            befriend(alice, friend)
            post = publish(alice)
            services.comment_create(user=friend, post_id=post.pk, text="x")
        # auth, the page (with actor, post, comment and its people), the posts' media
        with django_assert_num_queries(3):
            response = client.get(NOTIFICATIONS)
        assert len(response.json()["results"]) == n
