"""Who sees a post: every visibility setting against every relation of the viewer to the author.

The table is the specification. Each cell says where the viewer finds the post: ``F`` in their
home feed, ``A`` in the author's album (``-`` where not). Wherever the post is visible the viewer
can also open it, like it and comment on it; wherever it is not, all three answer 404.

Relations marked "later" change *after* the post was published: visibility is decided at read
time, so they apply at once, to that old post too. A tag's membership is resolved when the post
is made, so later tag edits change nothing.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services as account_services
from moments import services
from moments.models import Post, Timeline
from tests.conftest import befriend

from .conftest import album_ids, feed_ids, publish

pytestmark = pytest.mark.django_db

RELATIONS = [
    "self",  # the author looks at their own post
    "friend",
    "stranger",
    "unfriended_later",
    "blocked_by_author_later",
    "blocks_author_later",
    "named",  # chosen by name in the post's friend list
    "in_tag",  # member of the post's tag when it was published
    "added_to_tag_later",
    "removed_from_tag_later",
    "author_hides_from_them_later",  # author: "don't let them see my Moments"
    "they_hide_author_later",  # viewer: "hide their Moments from me"
    "author_hid_then_unhid",  # the setting was on when the post was made, off now
]

# One string per setting, one cell per relation (in the order above).
MATRIX = {
    "friends":              "FA FA -- -- -- -- FA FA FA FA -- -A FA",
    "private":              "FA -- -- -- -- -- -- -- -- -- -- -- --",
    "include":              "FA -- -- -- -- -- FA FA -- FA -- -- --",
    "exclude":              "FA FA -- -- -- -- -- -- FA -- -- -A FA",
    "hidden_by_staff":      "-- -- -- -- -- -- -- -- -- -- -- -- --",
    "deleted":              "-- -- -- -- -- -- -- -- -- -- -- -- --",
    "last_3_days, 1 day":   "FA FA -- -- -- -- FA FA FA FA -- -A FA",
    "last_3_days, 10 days": "FA -- -- -- -- -- -- -- -- -- -- -- --",
    "last_month, 10 days":  "FA FA -- -- -- -- FA FA FA FA -- -A FA",
    "last_month, 40 days":  "FA -- -- -- -- -- -- -- -- -- -- -- --",
    "last_6_months, 200 days": "FA -- -- -- -- -- -- -- -- -- -- -- --",
    "all, 400 days":        "FA FA -- -- -- -- FA FA FA FA -- -A FA",
}  # fmt: skip

WINDOWS = {"last_3_days": 3, "last_month": 30, "last_6_months": 180, "all": 0}

CASES = [
    pytest.param(setting, relation, cells.split()[i], id=f"{setting}|{relation}")
    for setting, cells in MATRIX.items()
    for i, relation in enumerate(RELATIONS)
]


def test_the_matrix_covers_every_relation():
    assert all(len(cells.split()) == len(RELATIONS) for cells in MATRIX.values())


def _age(post: Post, days: int) -> None:
    """Make the post ``days`` old (test setup: the clock is not a service)."""
    when = timezone.now() - timedelta(days=days)
    Post.objects.filter(pk=post.pk).update(created_at=when)
    Timeline.objects.filter(post=post).update(created=when)


@pytest.mark.parametrize(("setting", "relation", "expected"), CASES)
def test_visibility_matrix(setting, relation, expected, make_user, client_for):
    author = make_user(handle="author")
    other_friend = make_user(handle="filler")  # keeps "share with"/"don't share with" lists non-empty
    befriend(author, other_friend)
    viewer = author if relation == "self" else make_user(handle="viewer")
    tag = account_services.tag_create(owner=author, name="T")

    # The relation as it is when the post is published.
    if relation not in ("self", "stranger"):
        befriend(author, viewer)
    if relation in ("in_tag", "removed_from_tag_later"):
        account_services.tag_update(owner=author, tag_id=tag.pk, member_ids=[viewer.pk])
    if relation == "author_hid_then_unhid":
        services.friend_setting_update(owner=author, target_id=viewer.pk, hide_my_posts=True)

    visibility, _, age = setting.partition(", ")
    kwargs = {}
    if visibility in ("include", "exclude"):
        named = [other_friend.pk] + ([viewer.pk] if relation == "named" else [])
        kwargs = {"visibility": visibility, "user_ids": named, "tag_ids": [tag.pk]}
    elif visibility == "private":
        kwargs = {"visibility": "private"}
    post = publish(author, **kwargs)
    if visibility in WINDOWS:
        services.moments_settings_update(user=author, visible_days=WINDOWS[visibility])
        _age(post, int(age.split()[0]))
    elif visibility == "hidden_by_staff":
        services.post_hide(post_id=post.pk, by=None, reason="spam")
    elif visibility == "deleted":
        services.post_delete(user=author, post_id=post.pk)

    # What changes after publishing.
    if relation == "unfriended_later":
        account_services.friend_remove(user=viewer, friend_id=author.pk)
    elif relation == "blocked_by_author_later":
        account_services.block_add(user=author, target_id=viewer.pk)
    elif relation == "blocks_author_later":
        account_services.block_add(user=viewer, target_id=author.pk)
    elif relation == "added_to_tag_later":
        account_services.tag_update(owner=author, tag_id=tag.pk, member_ids=[viewer.pk])
    elif relation == "removed_from_tag_later":
        account_services.tag_update(owner=author, tag_id=tag.pk, member_ids=[])
    elif relation == "author_hides_from_them_later":
        services.friend_setting_update(owner=author, target_id=viewer.pk, hide_my_posts=True)
    elif relation == "they_hide_author_later":
        services.friend_setting_update(owner=viewer, target_id=author.pk, hide_their_posts=True)
    elif relation == "author_hid_then_unhid":
        services.friend_setting_update(owner=author, target_id=viewer.pk, hide_my_posts=False)

    client = client_for(viewer)
    in_feed = post.pk in feed_ids(client)
    in_album = post.pk in album_ids(client, author.pk)
    assert ("F" if in_feed else "-") + ("A" if in_album else "-") == expected

    visible = "A" in expected
    assert client.get(f"/api/v1/moments/posts/{post.pk}").status_code == (200 if visible else 404)
    assert client.put(f"/api/v1/moments/posts/{post.pk}/like").status_code == (204 if visible else 404)
    response = client.post(f"/api/v1/moments/posts/{post.pk}/comments", {"text": "hi"}, format="json")
    assert response.status_code == (201 if visible else 404)
    assert client.get(f"/api/v1/moments/posts/{post.pk}/comments").status_code == (200 if visible else 404)
    report = client.post(f"/api/v1/moments/posts/{post.pk}/report", {"reason": "spam"}, format="json")
    if relation == "self":
        assert report.status_code == (400 if visible else 404)
    else:
        assert report.status_code == (201 if visible else 404)


def test_unblocking_restores_the_feed(client_for, alice, bob):
    befriend(alice, bob)
    post = publish(alice)
    account_services.block_add(user=alice, target_id=bob.pk)
    assert feed_ids(client_for(bob)) == []
    account_services.block_remove(user=alice, target_id=bob.pk)
    assert feed_ids(client_for(bob)) == [post.pk]


def test_a_post_made_while_blocked_is_in_the_album_after_unblocking(client_for, alice, bob):
    befriend(alice, bob)
    account_services.block_add(user=bob, target_id=alice.pk)
    post = publish(alice)
    account_services.block_remove(user=bob, target_id=alice.pk)
    client = client_for(bob)
    assert album_ids(client, alice.pk) == [post.pk]
    # Not fanned out to someone in a block: their feed does not get it back (documented).
    assert feed_ids(client) == []


def test_window_change_applies_to_old_posts_at_once(client_for, alice, bob):
    befriend(alice, bob)
    old, new = publish(alice, "old"), publish(alice, "new")
    _age(old, 5)
    client = client_for(bob)
    assert feed_ids(client) == [new.pk, old.pk]
    services.moments_settings_update(user=alice, visible_days=3)
    assert feed_ids(client) == [new.pk]
    assert album_ids(client, alice.pk) == [new.pk]
    services.moments_settings_update(user=alice, visible_days=0)
    assert feed_ids(client) == [new.pk, old.pk]


def test_new_friend_sees_old_posts_in_the_album_not_in_the_feed(client_for, alice, bob):
    post = publish(alice)
    befriend(alice, bob)
    client = client_for(bob)
    assert album_ids(client, alice.pk) == [post.pk]
    assert feed_ids(client) == []


def test_friend_left_out_of_share_with_stays_out_after_becoming_tagged(client_for, alice, bob, carol):
    """Share with tag X: membership resolved at post time; later edits don't change the post."""
    befriend(alice, bob)
    befriend(alice, carol)
    tag = account_services.tag_create(owner=alice, name="family", member_ids=[bob.pk])
    post = publish(alice, visibility="include", tag_ids=[tag.pk])
    account_services.tag_update(owner=alice, tag_id=tag.pk, member_ids=[carol.pk])
    assert post.pk in feed_ids(client_for(bob))
    assert post.pk not in feed_ids(client_for(carol))
    assert album_ids(client_for(carol), alice.pk) == []
