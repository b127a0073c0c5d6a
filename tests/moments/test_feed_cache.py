"""The home feed's first-page cache (moments.feed_cache): every input of a page ends its entry.

Each case reads the feed (and reads it again, to prove the second read was served from the
cache), makes one change through the real service or API, and reads again: the change must show.
The changes run with the before-commit bump switched off and their after-commit callbacks run as
at commit, so each case proves that the after-commit bump alone is enough (the before-commit one
is a second line, tested on its own).
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta

import pytest
from django.core.files.storage import FileSystemStorage
from django.utils import timezone

from accounts import services as account_services
from moments import feed_cache, selectors, services
from moments.models import Post, Timeline
from tests.conftest import befriend

from .conftest import commit_feed_bumps, image_upload, publish
from .test_visibility import CASES, WINDOWS

pytestmark = pytest.mark.django_db


def _count(outcome: str) -> float:
    return feed_cache.outcomes.labels(outcome=outcome)._value.get()


def feed(client) -> dict:
    commit_feed_bumps()
    response = client.get("/api/v1/moments/feed")
    assert response.status_code == 200, response.content
    return response.json()


def warm(client) -> dict:
    """Read twice; the second read must come from the cache."""
    first = feed(client)
    hits = _count("hit")
    second = feed(client)
    assert _count("hit") == hits + 1, "the second read was not served from the cache"
    assert second == first
    return second


@pytest.fixture
def after_commit_only(django_capture_on_commit_callbacks):
    """``with after_commit_only():`` runs a change with no before-commit bump, then its
    after-commit callbacks (as a commit would)."""

    @contextlib.contextmanager
    def run():
        real = feed_cache._bump_now
        feed_cache._bump_now = lambda keys, token: None
        try:
            with django_capture_on_commit_callbacks(execute=True):
                yield
        finally:
            feed_cache._bump_now = real

    return run


def _post(page: dict, post_id: int) -> dict | None:
    return next((p for p in page["results"] if p["id"] == post_id), None)


def _ids(page: dict) -> list[int]:
    return [p["id"] for p in page["results"]]


# --- every input, table-driven ------------------------------------------------------------------
# Each case: setup(w) -> None (after the world is built, before the warm read), change(w) -> None,
# check(w, before, after) -> None. ``w`` is a namespace: viewer (alice), author (bob), a third
# friend of both (carol), a friend of bob only (dan), the post (bob's), clients.


class W:
    pass


def _like(w, user):
    services.like_add(user=user, post_id=w.post.pk)


def _comment(w, user, text="c", reply_to_id=None):
    return services.comment_create(user=user, post_id=w.post.pk, text=text, reply_to_id=reply_to_id)


def _names(people) -> list[str]:
    return [p["display_name"] for p in people]


def _gone(w, before, after):
    assert w.post.pk in _ids(before)
    assert w.post.pk not in _ids(after)


def _back(w, before, after):
    assert w.post.pk not in _ids(before)
    assert w.post.pk in _ids(after)


def _friends_again(a, b):
    outcome = account_services.friend_request_send(from_user=a, to_user_id=b.pk, search_token=None)
    if not outcome.became_friends:
        account_services.friend_request_accept(user=b, request_id=outcome.request.pk)


def _age(post: Post, days: float) -> None:
    when = timezone.now() - timedelta(days=days)
    Post.objects.filter(pk=post.pk).update(created_at=when)
    Timeline.objects.filter(post=post).update(created=when)


CASES_ALL = {
    # the viewer's timeline
    "fan-out: a friend publishes": (
        None,
        lambda w: setattr(w, "new", publish(w.carol, "new")),
        lambda w, b, a: _ids(a)[0] == w.new.pk or pytest.fail("new post missing"),
    ),
    "fan-out by the Celery task": (
        lambda w: setattr(w.settings, "MOMENTS_FANOUT_INLINE_MAX", 1),
        lambda w: setattr(w, "new", publish(w.carol, "new")),
        lambda w, b, a: _ids(a)[0] == w.new.pk or pytest.fail("new post missing"),
    ),
    "the viewer publishes": (
        None,
        lambda w: setattr(w, "new", publish(w.alice, "mine")),
        lambda w, b, a: _ids(a)[0] == w.new.pk or pytest.fail("own post missing"),
    ),
    "post deleted": (None, lambda w: services.post_delete(user=w.bob, post_id=w.post.pk), _gone),
    "post hidden by staff": (None, lambda w: services.post_hide(post_id=w.post.pk, by=None), _gone),
    "post shown again by staff": (
        lambda w: services.post_hide(post_id=w.post.pk, by=None),
        lambda w: services.post_unhide(post_id=w.post.pk, by=None),
        _back,
    ),
    # the post's likes and comments
    "like": (None, lambda w: _like(w, w.carol), lambda w, b, a: _post(a, w.post.pk)["likes"] != []),
    "like taken back": (
        lambda w: _like(w, w.carol),
        lambda w: services.like_remove(user=w.carol, post_id=w.post.pk),
        lambda w, b, a: _post(b, w.post.pk)["likes"] and _post(a, w.post.pk)["likes"] == [],
    ),
    "the viewer likes": (
        None,
        lambda w: _like(w, w.alice),
        lambda w, b, a: _post(a, w.post.pk)["liked_by_me"] is True,
    ),
    "comment": (
        None,
        lambda w: _comment(w, w.carol, "hello"),
        lambda w, b, a: [c["text"] for c in _post(a, w.post.pk)["comments"]] == ["hello"],
    ),
    "reply": (
        lambda w: setattr(w, "first", _comment(w, w.carol, "first")),
        lambda w: _comment(w, w.bob, "answer", reply_to_id=w.first.pk),
        lambda w, b, a: _post(a, w.post.pk)["comments"][1]["reply_to_user"]["id"] == w.carol.pk,
    ),
    "comment deleted": (
        lambda w: setattr(w, "first", _comment(w, w.carol, "first")),
        lambda w: services.comment_delete(user=w.carol, comment_id=w.first.pk),
        lambda w, b, a: _post(b, w.post.pk)["comments"] and _post(a, w.post.pk)["comments"] == [],
    ),
    "comment deleted by the post's author": (
        lambda w: setattr(w, "first", _comment(w, w.carol, "first")),
        lambda w: services.comment_delete(user=w.bob, comment_id=w.first.pk),
        lambda w, b, a: _post(a, w.post.pk)["comments"] == [],
    ),
    # friendships and blocks, both directions
    "unfriended by the viewer": (
        None,
        lambda w: account_services.friend_remove(user=w.alice, friend_id=w.bob.pk),
        _gone,
    ),
    "unfriended by the author": (
        None,
        lambda w: account_services.friend_remove(user=w.bob, friend_id=w.alice.pk),
        _gone,
    ),
    "friends again": (
        lambda w: account_services.friend_remove(user=w.bob, friend_id=w.alice.pk),
        lambda w: _friends_again(w.alice, w.bob),
        _back,
    ),
    "blocked by the author": (
        None,
        lambda w: account_services.block_add(user=w.bob, target_id=w.alice.pk),
        _gone,
    ),
    "the viewer blocks the author": (
        None,
        lambda w: account_services.block_add(user=w.alice, target_id=w.bob.pk),
        _gone,
    ),
    "unblocked": (
        lambda w: account_services.block_add(user=w.bob, target_id=w.alice.pk),
        lambda w: account_services.block_remove(user=w.bob, target_id=w.alice.pk),
        _back,
    ),
    # per-friend settings, both directions
    "author: don't let them see": (
        None,
        lambda w: services.friend_setting_update(owner=w.bob, target_id=w.alice.pk, hide_my_posts=True),
        _gone,
    ),
    "author: let them see again": (
        lambda w: services.friend_setting_update(owner=w.bob, target_id=w.alice.pk, hide_my_posts=True),
        lambda w: services.friend_setting_update(owner=w.bob, target_id=w.alice.pk, hide_my_posts=False),
        _back,
    ),
    "viewer: hide their posts": (
        None,
        lambda w: services.friend_setting_update(owner=w.alice, target_id=w.bob.pk, hide_their_posts=True),
        _gone,
    ),
    "viewer: show their posts again": (
        lambda w: services.friend_setting_update(owner=w.alice, target_id=w.bob.pk, hide_their_posts=True),
        lambda w: services.friend_setting_update(owner=w.alice, target_id=w.bob.pk, hide_their_posts=False),
        _back,
    ),
    # the author's "last N days"
    "window narrowed": (
        lambda w: _age(w.post, 5),
        lambda w: services.moments_settings_update(user=w.bob, visible_days=3),
        _gone,
    ),
    "window widened": (
        lambda w: (_age(w.post, 5), services.moments_settings_update(user=w.bob, visible_days=3)),
        lambda w: services.moments_settings_update(user=w.bob, visible_days=30),
        _back,
    ),
    # profiles of everyone shown
    "author's name": (
        None,
        lambda w: account_services.profile_update(user=w.bob, changes={"display_name": "Robert"}),
        lambda w, b, a: _post(a, w.post.pk)["author"]["display_name"] == "Robert",
    ),
    "author's handle": (
        None,
        lambda w: account_services.profile_update(user=w.bob, changes={"handle": "robert"}),
        lambda w, b, a: _post(a, w.post.pk)["author"]["handle"] == "robert",
    ),
    "author's avatar set": (
        None,
        lambda w: account_services.avatar_set(user=w.bob, upload=image_upload()),
        lambda w, b, a: _post(a, w.post.pk)["author"]["avatar_thumb_url"] is not None,
    ),
    "author's avatar removed": (
        lambda w: account_services.avatar_set(user=w.bob, upload=image_upload()),
        lambda w: account_services.avatar_remove(user=w.bob),
        lambda w, b, a: _post(a, w.post.pk)["author"]["avatar_thumb_url"] is None,
    ),
    "liker's name": (
        lambda w: _like(w, w.carol),
        lambda w: account_services.profile_update(user=w.carol, changes={"display_name": "Caz"}),
        lambda w, b, a: _names(_post(a, w.post.pk)["likes"]) == ["Caz"],
    ),
    "commenter's name": (
        lambda w: _comment(w, w.carol),
        lambda w: account_services.profile_update(user=w.carol, changes={"display_name": "Caz"}),
        lambda w, b, a: _post(a, w.post.pk)["comments"][0]["author"]["display_name"] == "Caz",
    ),
    "replied-to user's name": (
        lambda w: _comment(w, w.bob, "answer", reply_to_id=_comment(w, w.carol, "first").pk),
        # carol leaves alice's friends' view? no: carol stays; her name changes.
        lambda w: account_services.profile_update(user=w.carol, changes={"display_name": "Caz"}),
        lambda w, b, a: _post(a, w.post.pk)["comments"][1]["reply_to_user"]["display_name"] == "Caz",
    ),
    # whose likes and comments the viewer may see: the viewer's own friendships
    "a liker stops being the viewer's friend": (
        lambda w: _like(w, w.carol),
        lambda w: account_services.friend_remove(user=w.carol, friend_id=w.alice.pk),
        lambda w, b, a: _post(b, w.post.pk)["likes"] and _post(a, w.post.pk)["likes"] == [],
    ),
    "a commenter becomes the viewer's friend": (
        lambda w: _comment(w, w.dan, "from dan"),
        lambda w: _friends_again(w.dan, w.alice),
        lambda w, b, a: (
            _post(b, w.post.pk)["comments"] == []
            and [c["text"] for c in _post(a, w.post.pk)["comments"]] == ["from dan"]
        ),
    ),
    "a commenter blocks the viewer": (
        lambda w: _comment(w, w.carol, "from carol"),
        lambda w: account_services.block_add(user=w.carol, target_id=w.alice.pk),
        lambda w, b, a: _post(b, w.post.pk)["comments"] and _post(a, w.post.pk)["comments"] == [],
    ),
}


@pytest.mark.parametrize("name", list(CASES_ALL))
def test_every_input_ends_the_cached_page(
    name, make_user, client_for, settings, after_commit_only, django_capture_on_commit_callbacks
):
    setup, change, check = CASES_ALL[name]
    w = W()
    w.settings = settings
    w.alice, w.bob = make_user(handle="alice"), make_user(handle="bob")
    w.carol, w.dan = make_user(handle="carol"), make_user(handle="dan")
    for a, b in ((w.alice, w.bob), (w.alice, w.carol), (w.bob, w.carol), (w.bob, w.dan)):
        befriend(a, b)
    w.post = publish(w.bob, "bob's")
    if setup is not None:
        with django_capture_on_commit_callbacks(execute=True):
            setup(w)
    client = client_for(w.alice)
    before = warm(client)
    with after_commit_only():
        change(w)
    after = feed(client)
    result = check(w, before, after)
    assert result is not False, (before, after)


# --- the visibility matrix, with a warm cache before each change ---------------------------------


@pytest.mark.parametrize(("setting", "relation", "expected"), CASES)
def test_visibility_matrix_with_a_warm_cache(
    setting, relation, expected, make_user, client_for, after_commit_only
):
    """tests/moments/test_visibility.py's matrix (the feed's column), the viewer's first page
    cached before the setting and before the later change, each change after-commit bumps only."""
    author = make_user(handle="author")
    other_friend = make_user(handle="filler")
    befriend(author, other_friend)
    viewer = author if relation == "self" else make_user(handle="viewer")
    tag = account_services.tag_create(owner=author, name="T")
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
    client = client_for(viewer)
    with after_commit_only():
        post = publish(author, **kwargs)
    if visibility in WINDOWS:
        _age(post, int(age.split()[0]))
    feed(client)  # cached before the setting changes
    feed(client)
    with after_commit_only():
        if visibility in WINDOWS:
            services.moments_settings_update(user=author, visible_days=WINDOWS[visibility])
        elif visibility == "hidden_by_staff":
            services.post_hide(post_id=post.pk, by=None, reason="spam")
        elif visibility == "deleted":
            services.post_delete(user=author, post_id=post.pk)

    feed(client)  # and cached again before the later change
    with after_commit_only():
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
    in_feed = post.pk in _ids(feed(client))
    assert in_feed == (expected[0] == "F")


# --- the race: a page built from a snapshot older than a write -----------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_page_built_before_a_write_committed_is_not_stored_under_the_new_versions(
    make_user, client_for, monkeypatch
):
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob)
    client = client_for(alice)
    real = selectors.feed_page

    def slow_page(**kwargs):
        page = real(**kwargs)  # the snapshot: before the like
        services.like_add(user=bob, post_id=post.pk)  # commits, bumps after commit
        return page

    monkeypatch.setattr(selectors, "feed_page", slow_page)
    skipped = _count("skipped")
    stale = feed(client)
    assert stale["results"][0]["likes"] == []  # this read began before the like: fine to miss it
    assert _count("skipped") == skipped + 1  # but it is not kept
    monkeypatch.setattr(selectors, "feed_page", real)
    assert feed(client)["results"][0]["liked_by_me"] is False
    assert [like["id"] for like in feed(client)["results"][0]["likes"]] == [bob.pk]


@pytest.mark.django_db(transaction=True)
def test_a_page_stored_before_the_after_commit_bump_is_not_served_after_it(
    make_user, client_for, monkeypatch
):
    """The write commits after the page's snapshot, the page is stored (under the versions read
    before it), then the write's after-commit bump lands: the stored page is never served."""
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob)
    client = client_for(alice)
    real = selectors.feed_page
    pending = []

    def slow_page(**kwargs):
        page = real(**kwargs)
        # both bumps delayed...
        monkeypatch.setattr(feed_cache, "_bump_now", lambda *args: pending.append((original_now, args)))
        monkeypatch.setattr(feed_cache, "_bump", lambda *args: pending.append((original_bump, args)))
        services.like_add(user=bob, post_id=post.pk)
        monkeypatch.setattr(feed_cache, "_bump_now", original_now)
        monkeypatch.setattr(feed_cache, "_bump", original_bump)
        return page

    original_now, original_bump = feed_cache._bump_now, feed_cache._bump
    monkeypatch.setattr(selectors, "feed_page", slow_page)
    stored = _count("stored")
    feed(client)
    assert _count("stored") == stored + 1  # stored under the versions read before the write
    monkeypatch.setattr(selectors, "feed_page", real)
    for bump, args in pending:  # ...until now, in their order
        bump(*args)
    assert [like["id"] for like in feed(client)["results"][0]["likes"]] == [bob.pk]


def test_the_before_commit_bump_ends_entries_even_without_the_after_commit_one(
    make_user, client_for, monkeypatch
):
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob)
    client = client_for(alice)
    warm(client)
    # The test's transaction never commits: only the before-commit bump runs.
    services.like_add(user=bob, post_id=post.pk)
    assert [like["id"] for like in feed(client)["results"][0]["likes"]] == [bob.pk]


def test_a_rolled_back_write_never_bumps_after_commit(django_capture_on_commit_callbacks, bob):
    from django.db import transaction

    with django_capture_on_commit_callbacks() as callbacks:
        try:
            with transaction.atomic():
                feed_cache.changed(posts=[1])
                raise RuntimeError
        except RuntimeError:
            pass
    assert callbacks == []


# --- time: a post leaving its author's window ----------------------------------------------------


def _entry_ttl_ms(viewer_id: int) -> int:
    redis = feed_cache._Redis.get()
    return redis.client.pttl(feed_cache._entry_key(viewer_id, 20))


def test_the_entry_expires_when_the_first_post_leaves_its_window(make_user, client_for):
    alice, bob, carol = make_user(handle="alice"), make_user(handle="bob"), make_user(handle="carol")
    befriend(alice, bob)
    befriend(alice, carol)
    services.moments_settings_update(user=bob, visible_days=3)
    services.moments_settings_update(user=carol, visible_days=30)
    older = publish(carol, "carol's, 29 days and 23 hours old")
    _age(older, 29 + 23 / 24)
    edge = publish(bob, "bob's, 20 seconds before leaving")
    _age(edge, 3 - 20 / 86400)
    fresh = publish(bob, "fresh")
    client = client_for(alice)
    assert _ids(feed(client)) == [fresh.pk, edge.pk, older.pk]
    ttl = _entry_ttl_ms(alice.pk)
    assert 0 < ttl <= 19_000  # no later than the edge, less the clock margin
    # The page says when: the SQL page and the ORM reference agree.
    sql = selectors.feed_page(viewer_id=alice.pk, before=None, limit=20)
    orm = selectors.feed_page_orm(viewer_id=alice.pk, before=None, limit=20)
    assert sql.expires_at == orm.expires_at
    assert sql.expires_at == Timeline.objects.get(user=alice, post=edge).created + timedelta(days=3)


def test_at_the_edge_the_page_is_read_again(make_user, client_for):
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    services.moments_settings_update(user=bob, visible_days=3)
    post = publish(bob)
    _age(post, 3 - 1.3 / 86400)  # leaves the window in 1.3 s
    client = client_for(alice)
    assert _ids(feed(client)) == [post.pk]
    assert 0 < _entry_ttl_ms(alice.pk) <= 300
    time.sleep(1.4)
    misses = _count("miss")
    assert _ids(feed(client)) == []
    assert _count("miss") == misses + 1


def test_own_posts_never_expire_the_page(make_user, client_for):
    alice = make_user(handle="alice")
    services.moments_settings_update(user=alice, visible_days=3)
    post = publish(alice)
    _age(post, 10)
    assert _ids(feed(client_for(alice))) == [post.pk]
    assert _entry_ttl_ms(alice.pk) > 250_000  # MOMENTS_FEED_CACHE_TTL (300 s), not the window


# --- switches and failures -----------------------------------------------------------------------


def test_a_hit_answers_the_same_bytes_as_a_miss_and_as_no_cache(make_user, client_for, settings):
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob, "line\u2028separator “curly” 😀")
    services.like_add(user=alice, post_id=post.pk)
    client = client_for(alice)
    commit_feed_bumps()
    miss = client.get("/api/v1/moments/feed").content
    hit = client.get("/api/v1/moments/feed").content
    settings.MOMENTS_FEED_CACHE = False
    assert miss == hit == client.get("/api/v1/moments/feed").content
    indented = client.get("/api/v1/moments/feed", HTTP_ACCEPT="application/json; indent=2")
    assert indented.json()["results"][0]["id"] == post.pk


def test_the_setting_off_serves_nothing_from_the_cache_and_writes_still_bump(make_user, client_for, settings):
    settings.MOMENTS_FEED_CACHE = False
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob)
    client = client_for(alice)
    hits, misses = _count("hit"), _count("miss")
    feed(client)
    feed(client)
    assert (_count("hit"), _count("miss")) == (hits, misses)
    assert _entry_ttl_ms(alice.pk) == -2  # no entry
    redis = feed_cache._Redis.get()
    before = redis.client.get(feed_cache.post_key(post.pk))
    services.like_add(user=alice, post_id=post.pk)
    assert redis.client.get(feed_cache.post_key(post.pk)) != before  # on again later: still exact


def test_later_pages_are_never_cached(make_user, client_for):
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    posts = [publish(bob, str(i)) for i in range(3)]
    client = client_for(alice)
    first = client.get("/api/v1/moments/feed", {"page_size": 2}).json()
    hits, misses = _count("hit"), _count("miss")
    second = client.get(first["next"]).json()
    assert [p["id"] for p in second["results"]] == [posts[0].pk]
    assert (_count("hit"), _count("miss")) == (hits, misses)


class SigningStorage(FileSystemStorage):
    """Signs its URLs (like S3 with query-string authentication): a page must never be kept."""

    def url(self, name):
        return f"{super().url(name)}?sig={time.monotonic_ns()}"


def test_a_storage_that_may_sign_urls_is_never_cached(make_user, client_for, settings):
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}.SigningStorage"}}
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    publish(bob)
    client = client_for(alice)
    hits = _count("hit")
    feed(client)
    feed(client)
    assert _count("hit") == hits
    assert not feed_cache.serving()


def test_redis_down_serves_from_postgresql_and_writes_succeed(make_user, client_for, settings):
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    settings.MOMENTS_FEED_CACHE_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    post = publish(bob)
    services.like_add(user=alice, post_id=post.pk)
    client = client_for(alice)
    assert _ids(feed(client)) == [post.pk]
    assert feed(client)["results"][0]["liked_by_me"] is True


def test_a_missing_version_is_created_no_newer_than_the_read(make_user, client_for):
    """A version key that expired or was evicted comes back as the counter read before the page:
    a page stored earlier under the lost version never matches it again."""
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob)
    client = client_for(alice)
    warm(client)
    redis = feed_cache._Redis.get()
    key = feed_cache.post_key(post.pk)
    redis.client.delete(key)  # evicted
    services.like_add(user=alice, post_id=post.pk)  # bumps it again
    redis.client.delete(key)  # and evicted again
    assert feed(client)["results"][0]["liked_by_me"] is True


def test_which_storages_may_be_cached():
    from storages.backends.s3 import S3Storage

    assert feed_cache.stable_urls(FileSystemStorage())
    assert feed_cache.stable_urls(S3Storage(bucket_name="b", querystring_auth=False))
    assert not feed_cache.stable_urls(S3Storage(bucket_name="b", querystring_auth=True))  # signed
    assert not feed_cache.stable_urls(SigningStorage())  # a subclass may sign


def test_an_entry_that_lists_no_versions_is_never_served(make_user, client_for):
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob)
    client = client_for(alice)
    warm(client)
    redis = feed_cache._Redis.get()
    redis.client.set(feed_cache._entry_key(alice.pk, 20), b'{"not":"versions"}\n\n[]')
    hits = _count("hit")
    assert _ids(feed(client)) == [post.pk]
    assert _count("hit") == hits
