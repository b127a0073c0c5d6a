"""The home feed's one-statement SQL (``moments.feed``) gives exactly what the ORM reference
(``selectors.feed`` rendered by ``events.post``) gives: same posts, same order, same pages, same
payloads, for every viewer of a world that exercises every rule."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts import services as account_services
from accounts.models import User
from moments import feed as feed_sql
from moments import selectors, services
from moments.models import Comment, Post, Timeline
from superapp.core.errors import NotFound
from tests.conftest import befriend

from .conftest import image_upload, publish

pytestmark = pytest.mark.django_db


def _age(post, days):
    when = timezone.now() - timedelta(days=days)
    Post.objects.filter(pk=post.pk).update(created_at=when)
    Timeline.objects.filter(post=post).update(created=when)


@pytest.fixture
def world(make_user, settings):
    settings.MOMENTS_COMMENTS_SHOWN = 2
    settings.MOMENTS_LIKES_SHOWN = 3
    names = ["ann", "ben", "cat", "dan", "eve", "fay", "gus"]
    u = {n: make_user(handle=n) for n in names}
    for a, b in [("ann", "ben"), ("ann", "cat"), ("ann", "dan"), ("ann", "eve"), ("ben", "cat"), ("ben", "fay"),
                 ("cat", "dan"), ("dan", "eve"), ("eve", "fay"), ("fay", "gus"), ("ann", "gus")]:  # fmt: skip
        befriend(u[a], u[b])
    tag = account_services.tag_create(owner=u["ann"], name="close", member_ids=[u["ben"].pk, u["cat"].pk])
    image = services.media_upload(owner=u["ann"], kind="image", upload=image_upload())
    posts = [
        publish(u["ann"], "photos", media_ids=[image.pk], location=services.Place(name="Park")),
        publish(u["ann"], "close only", visibility="include", tag_ids=[tag.pk]),
        publish(u["ann"], "not ben", visibility="exclude", user_ids=[u["ben"].pk]),
        publish(u["ann"], "me only", visibility="private"),
        publish(u["ann"], "link", link=services.LinkCard(url="https://e.com", title="E")),
        publish(u["ben"], "old one"),
        publish(u["ben"], "ben now"),
        publish(u["cat"], "cat"),
        publish(u["dan"], "dan"),
        publish(u["eve"], "eve"),
        publish(u["gus"], "gus"),
        publish(u["fay"], "to be hidden"),
    ]
    _age(posts[5], 10)
    services.moments_settings_update(user=u["ben"], visible_days=3)
    services.post_hide(post_id=posts[11].pk, by=None)
    services.friend_setting_update(owner=u["dan"], target_id=u["ann"].pk, hide_my_posts=True)
    services.friend_setting_update(owner=u["ann"], target_id=u["eve"].pk, hide_their_posts=True)
    account_services.block_add(user=u["gus"], target_id=u["ann"].pk)
    for post in posts[:3] + posts[6:8]:
        for liker in ("ben", "cat", "dan", "eve", "ann"):
            with contextlib.suppress(NotFound):  # not visible to them: that is part of the world
                services.like_add(user=u[liker], post_id=post.pk)
    first = services.comment_create(user=u["cat"], post_id=posts[0].pk, text="first")
    services.comment_create(user=u["ben"], post_id=posts[0].pk, text="reply", reply_to_id=first.pk)
    services.comment_create(user=u["dan"], post_id=posts[0].pk, text="third")
    services.comment_create(user=u["ann"], post_id=posts[0].pk, text="fourth")
    services.comment_delete(user=u["cat"], comment_id=first.pk)  # the reply keeps naming cat
    services.comment_create(user=u["dan"], post_id=posts[7].pk, text="dan on cat")
    # What the statement writes as JSON itself: avatars (names made URLs in Python), a link card
    # with its thumbnail, coordinates, text that JSON must escape, whole-second times.
    User.objects.filter(pk=u["ben"].pk).update(avatar_thumb="avatars/ben thumb é.jpg")
    User.objects.filter(pk=u["cat"].pk).update(avatar_thumb="avatars/cat.132.jpg")
    tricky = publish(
        u["cat"],
        'say "hi" \\ to 中文 😀 \u2028 next line\n\ttab </script>',
        link=services.LinkCard(url="https://e.com/a?b=1&c=é", title='T "q"', thumb_url="https://e.com/t.png"),
        location=services.Place(name="Bund", latitude=Decimal("31.2397"), longitude=Decimal("-121.4998")),
    )
    services.like_add(user=u["ben"], post_id=tricky.pk)
    services.like_add(user=u["ann"], post_id=tricky.pk)
    whole = services.comment_create(user=u["ben"], post_id=tricky.pk, text="ünïcödé \u2029")
    second = timezone.now().replace(microsecond=0)
    Comment.objects.filter(pk=whole.pk).update(created_at=second)
    Post.objects.filter(pk=tricky.pk).update(created_at=second)
    Timeline.objects.filter(post=tricky).update(created=second)
    return u


def _all_pages(fetch, viewer_id, size):
    posts, before = [], None
    while True:
        page = fetch(viewer_id=viewer_id, before=before, limit=size)
        posts += page.posts
        if page.next_position is None:
            return posts
        before = page.next_position


@pytest.mark.parametrize("size", [2, 50])
def test_sql_feed_equals_the_orm_reference_for_every_viewer(world, size):
    for name, user in world.items():
        expected = _all_pages(selectors.feed_page_orm, user.pk, size)
        got = _all_pages(feed_sql.feed_page, user.pk, size)
        assert got == expected, name


def test_the_world_exercises_the_rules(world):
    texts = {n: [p["text"] for p in _all_pages(feed_sql.feed_page, u.pk, 50)] for n, u in world.items()}
    assert "old one" not in texts["ann"] and "ben now" in texts["ann"]  # ben's 3-day window
    assert "eve" not in texts["ann"]  # ann hides eve's posts
    assert "gus" not in texts["ann"]  # gus blocked ann
    assert "to be hidden" not in texts["fay"]  # hidden by staff, for the author too
    assert "not ben" not in texts["ben"] and "close only" in texts["ben"]
    assert "dan" not in texts["ann"]  # dan: "don't let ann see my Moments"
    assert "close only" not in texts["dan"] and "photos" in texts["dan"]
    photos = next(p for p in _all_pages(feed_sql.feed_page, world["ann"].pk, 50) if p["text"] == "photos")
    assert photos["more_comments"] is True and len(photos["comments"]) == 2
    assert photos["comments"][0]["reply_to_user"]["handle"] == "cat"
    assert photos["media"][0]["url"].endswith(".full.jpg")
    assert photos["location"] == {"name": "Park", "latitude": None, "longitude": None}
    tricky = next(
        p for p in _all_pages(feed_sql.feed_page, world["ann"].pk, 50) if p["text"].startswith("say")
    )
    assert tricky["author"]["avatar_thumb_url"].endswith("/avatars/cat.132.jpg")
    assert tricky["likes"][0]["avatar_thumb_url"].endswith("/avatars/ben%20thumb%20%C3%A9.jpg")
    assert tricky["location"] == {"name": "Bund", "latitude": 31.2397, "longitude": -121.4998}
    assert tricky["link"]["thumb_url"] == "https://e.com/t.png"
    # A whole second is written without a fraction (Python's isoformat), others with microseconds.
    assert "." not in tricky["created_at"] and tricky["created_at"].endswith("Z")
    assert "." not in tricky["comments"][0]["created_at"]
    assert len(photos["created_at"].split(".")[1]) == len("123456Z")
