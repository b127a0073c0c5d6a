"""The feed cache never serves a page that a committed write should have ended, even when Redis
refuses or loses writes (moments.feed_cache; docs/moments.md, "First-page cache").

One test per way a stale page could be served (found in review): bumps refused while reads work
(out of memory, a read-only replica, a failed bump), an evicted version, a page built while the
write's transaction was open, two deployments sharing one Redis database, a restored Redis.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time

import pytest
import redis as redis_py
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection, transaction

from accounts import services as account_services
from accounts.models import Block, Friendship
from moments import feed_cache, selectors, services
from moments.models import Comment, FriendSetting, Like, MomentsProfile, Post
from tests.conftest import befriend
from tests.threads import run_together

from .conftest import commit_feed_bumps, image_upload, publish

pytestmark = pytest.mark.django_db


def _count(outcome: str) -> float:
    return feed_cache.outcomes.labels(outcome=outcome)._value.get()


def _bump_failures(when: str) -> float:
    from superapp.core import metrics

    return metrics.moments_feed_cache_bump_failures.labels(when=when)._value.get()


def feed(client) -> dict:
    commit_feed_bumps()
    response = client.get("/api/v1/moments/feed")
    assert response.status_code == 200, response.content
    return response.json()


def ids(page: dict) -> list[int]:
    return [p["id"] for p in page["results"]]


def warm(client) -> dict:
    feed(client)
    hits = _count("hit")
    page = feed(client)
    assert _count("hit") == hits + 1, "the second read was not served from the cache"
    return page


def _refused(*args, **kwargs):
    raise redis_py.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'.")


# --- a Redis of our own (out of memory, replica) ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_redis(tmp_path):
    """``own_redis(*args)`` starts a private redis-server (stopped after the test) and returns a
    client for it: one whose memory limit or role the test may change."""
    binary = shutil.which("redis-server")
    # CI starts Redis from this binary (.ci/run): a machine without it cannot run the suite.
    assert binary is not None, "redis-server is not installed"
    started = []

    def start(*args: str) -> redis_py.Redis:
        port = _free_port()
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
                *args,
            ],  # a replica writes the synced RDB to --dir
            stdout=subprocess.DEVNULL,
        )
        started.append(process)
        client = redis_py.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                return client
            except redis_py.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


def _url(client: redis_py.Redis) -> str:
    return f"redis://127.0.0.1:{client.connection_pool.connection_kwargs['port']}/0"


def test_redis_out_of_memory_refuses_the_read_and_the_removal(make_user, client_for, settings, own_redis):
    """At maxmemory with noeviction, Redis refuses the bumps. The read script must be refused too
    (it would otherwise serve pages the refused bumps should have ended); and a removal must not
    be made without its bump."""
    own = own_redis()
    settings.MOMENTS_FEED_CACHE_URL = _url(own)
    alice, bob, staff = make_user(handle="alice"), make_user(handle="bob"), make_user(handle="staff")
    befriend(alice, bob)
    post = publish(bob, "reported")
    client = client_for(alice)
    warm(client)
    own.config_set("maxmemory-policy", "noeviction")
    own.config_set("maxmemory", "1")  # memory full
    try:
        with pytest.raises(feed_cache.CacheUnavailable), transaction.atomic():
            services.post_hide(post_id=post.pk, by=staff, reason="abuse")
        assert Post.objects.get(pk=post.pk).hidden_at is None  # nothing half-written
        hits = _count("hit")
        assert ids(feed(client)) == [post.pk]  # from PostgreSQL
        assert _count("hit") == hits, "a read was served from the cache while Redis refused writes"
    finally:
        own.config_set("maxmemory", "0")
    services.post_hide(post_id=post.pk, by=staff, reason="abuse")  # memory back: the hide goes through
    assert ids(feed(client)) == []


def test_a_read_only_replica_never_serves(make_user, client_for, settings, own_redis):
    """After a failover to a replica that still replicates (read-only), writes are refused: the
    read must be refused as well."""
    primary = own_redis()
    replica = own_redis("--replicaof", "127.0.0.1", str(primary.connection_pool.connection_kwargs["port"]))
    settings.MOMENTS_FEED_CACHE_URL = _url(primary)
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob)
    client = client_for(alice)
    warm(client)
    for _ in range(100):  # the entry reaches the replica
        if (
            replica.info("replication").get("master_link_status") == "up"
            and replica.dbsize() == primary.dbsize()
        ):
            break
        time.sleep(0.05)
    settings.MOMENTS_FEED_CACHE_URL = _url(replica)
    hits = _count("hit")
    assert ids(feed(client)) == [post.pk]
    assert _count("hit") == hits, "a read-only replica served a page"


def test_the_read_script_is_one_redis_treats_as_writing():
    # "#!lua" with no flags: refused under OOM and on a read-only replica (flags=no-writes would
    # imply allow-oom and run on replicas).
    assert feed_cache._READ.startswith("#!lua\n")


# --- a removal whose bump fails is not made ------------------------------------------------------


def _world(make_user):
    alice, bob, carol = make_user(handle="alice"), make_user(handle="bob"), make_user(handle="carol")
    for a, b in ((alice, bob), (alice, carol), (bob, carol)):
        befriend(a, b)
    post = publish(bob, "bob's")
    services.like_add(user=carol, post_id=post.pk)
    comment = services.comment_create(user=carol, post_id=post.pk, text="carol's")
    account_services.avatar_set(user=bob, upload=image_upload())
    return alice, bob, carol, post, comment


REMOVALS = {
    "block": (
        lambda a, b, c, p, m: account_services.block_add(user=b, target_id=a.pk),
        lambda a, b, c, p, m: not Block.objects.exists(),
    ),
    "unfriend": (
        lambda a, b, c, p, m: account_services.friend_remove(user=b, friend_id=a.pk),
        lambda a, b, c, p, m: Friendship.objects.filter(user=a, friend=b).exists(),
    ),
    "staff hide": (
        lambda a, b, c, p, m: services.post_hide(post_id=p.pk, by=None),
        lambda a, b, c, p, m: Post.objects.get(pk=p.pk).hidden_at is None,
    ),
    "post delete": (
        lambda a, b, c, p, m: services.post_delete(user=b, post_id=p.pk),
        lambda a, b, c, p, m: Post.objects.filter(pk=p.pk).exists(),
    ),
    "don't let them see": (
        lambda a, b, c, p, m: services.friend_setting_update(owner=b, target_id=a.pk, hide_my_posts=True),
        lambda a, b, c, p, m: not FriendSetting.objects.filter(hide_my_posts=True).exists(),
    ),
    "hide theirs": (
        lambda a, b, c, p, m: services.friend_setting_update(owner=a, target_id=b.pk, hide_their_posts=True),
        lambda a, b, c, p, m: not FriendSetting.objects.filter(hide_their_posts=True).exists(),
    ),
    "narrower window": (
        lambda a, b, c, p, m: services.moments_settings_update(user=b, visible_days=3),
        lambda a, b, c, p, m: not MomentsProfile.objects.filter(user=b, visible_days=3).exists(),
    ),
    "unlike": (
        lambda a, b, c, p, m: services.like_remove(user=c, post_id=p.pk),
        lambda a, b, c, p, m: Like.objects.filter(post=p, user=c).exists(),
    ),
    "comment delete": (
        lambda a, b, c, p, m: services.comment_delete(user=c, comment_id=m.pk),
        lambda a, b, c, p, m: Comment.objects.filter(pk=m.pk).exists(),
    ),
    "profile change": (
        lambda a, b, c, p, m: account_services.profile_update(user=b, changes={"display_name": "New"}),
        lambda a, b, c, p, m: type(b).objects.get(pk=b.pk).display_name != "New",
    ),
    "avatar removed": (
        lambda a, b, c, p, m: account_services.avatar_remove(user=b),
        lambda a, b, c, p, m: bool(type(b).objects.get(pk=b.pk).avatar),
    ),
    "new avatar": (
        lambda a, b, c, p, m: account_services.avatar_set(user=b, upload=image_upload(color=(1, 2, 3))),
        lambda a, b, c, p, m: type(b).objects.get(pk=b.pk).avatar.name == m.old_avatar,
    ),
}


@pytest.mark.parametrize("name", list(REMOVALS))
def test_a_removal_whose_bump_fails_is_refused_and_not_made(name, make_user, monkeypatch):
    alice, bob, carol, post, comment = _world(make_user)
    comment.old_avatar = type(bob).objects.get(pk=bob.pk).avatar.name
    monkeypatch.setattr(feed_cache._Redis.get(), "pend", _refused)
    write, unchanged = REMOVALS[name]
    failures = _bump_failures("before_commit")
    # (an outer atomic block: the service's own transaction rolls back, the test's stays usable)
    with pytest.raises(feed_cache.CacheUnavailable) as raised, transaction.atomic():
        write(alice, bob, carol, post, comment)
    assert raised.value.status_code == 503
    assert unchanged(alice, bob, carol, post, comment), "the refused write was made"
    assert _bump_failures("before_commit") == failures + 1


def test_the_api_answers_503_with_a_retryable_code_and_the_block_is_not_made(
    make_user, client_for, monkeypatch
):
    """The review's case: bob blocks alice while bumps fail; alice must not keep getting bob's
    post from the cache. The block is refused (503) instead."""
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob, "private to friends")
    client = client_for(alice)
    warm(client)
    monkeypatch.setattr(feed_cache._Redis.get(), "pend", _refused)
    response = client_for(bob).post("/api/v1/contacts/blocks", {"user_id": alice.pk}, format="json")
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "temporarily_unavailable"
    assert not Block.objects.exists()
    monkeypatch.undo()
    account_services.block_add(user=bob, target_id=alice.pk)  # Redis back: the retry goes through
    assert post.pk not in ids(feed(client))


def test_an_addition_whose_bump_fails_is_made(make_user, client_for, monkeypatch):
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob)
    client = client_for(alice)
    warm(client)
    monkeypatch.setattr(feed_cache._Redis.get(), "pend", _refused)
    services.like_add(user=alice, post_id=post.pk)  # nothing to leak: made, after-commit bump only
    monkeypatch.undo()
    assert feed(client)["results"][0]["liked_by_me"] is True


def test_with_the_cache_off_a_removal_is_made_even_when_redis_refuses(make_user, monkeypatch, settings):
    settings.MOMENTS_FEED_CACHE = False  # nothing is served from the cache: nothing can leak
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    monkeypatch.setattr(feed_cache._Redis.get(), "pend", _refused)
    account_services.block_add(user=bob, target_id=alice.pk)
    assert Block.objects.exists()


# --- the after-commit bump: robust, retried, counted ---------------------------------------------


def test_the_after_commit_bump_is_registered_robust():
    with transaction.atomic():
        feed_cache.changed(posts=[1])
        (_sids, func, robust) = connection.run_on_commit[-1]
        assert func.__module__ == "moments.feed_cache"
        assert robust is True


def test_a_failed_after_commit_bump_is_retried_once(make_user, client_for, monkeypatch):
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob)
    client = client_for(alice)
    warm(client)
    real, calls = feed_cache._bump, []

    def flaky(keys, token=""):
        calls.append(keys)
        if len(calls) == 1:
            raise redis_py.exceptions.TimeoutError("Timeout reading from socket")
        real(keys, token)

    monkeypatch.setattr(feed_cache, "_bump", flaky)
    failures = _bump_failures("after_commit")
    services.like_add(user=alice, post_id=post.pk)
    commit_feed_bumps()
    assert len(calls) == 2
    assert _bump_failures("after_commit") == failures
    monkeypatch.undo()
    assert feed(client)["results"][0]["liked_by_me"] is True
    assert feed(client)["results"][0]["liked_by_me"] is True
    assert _count("hit") > 0


def test_a_lost_after_commit_bump_is_counted_and_logged_and_nothing_stale_is_served(
    make_user, client_for, monkeypatch, caplog
):
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob)
    client = client_for(alice)
    warm(client)
    monkeypatch.setattr(feed_cache, "_bump", _refused)
    failures = _bump_failures("after_commit")
    with caplog.at_level(logging.ERROR, logger="moments.feed_cache"):
        services.post_hide(post_id=post.pk, by=None)
        commit_feed_bumps()
    assert _bump_failures("after_commit") == failures + 1
    assert "after commit" in caplog.text
    monkeypatch.undo()
    assert feed_cache._Redis.get().client.get(feed_cache.post_key(post.pk)) == b"pending"
    assert ids(feed(client)) == []  # the old entry no longer matches: read from PostgreSQL
    assert ids(feed(client)) == []  # (the new page does not show the post: it may be cached)


# --- an evicted version --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_eviction_after_a_bump_never_lets_a_pre_write_page_be_stored(make_user, client_for, monkeypatch):
    """A reader reads seq, builds its page; a hide commits and bumps the post's version; Redis
    evicts that version; the reader then reads its versions. The missing version must not come
    back as the reader's seq (that would store the old page under a current version)."""
    alice, bob, staff = make_user(handle="alice"), make_user(handle="bob"), make_user(handle="staff")
    befriend(alice, bob)
    post = publish(bob, "to be hidden")
    client = client_for(alice)
    real = selectors.feed_page

    def slow_page(**kwargs):
        page = real(**kwargs)  # the snapshot: before the hide
        services.post_hide(post_id=post.pk, by=staff, reason="abuse")  # commits, bumps p:<post>
        feed_cache._Redis.get().client.delete(feed_cache.post_key(post.pk))  # evicted
        return page

    monkeypatch.setattr(selectors, "feed_page", slow_page)
    assert ids(feed(client)) == [post.pk]  # this read began before the hide: fine to show it once
    monkeypatch.setattr(selectors, "feed_page", real)
    assert post.pk not in ids(feed(client)), "hidden post served from the cache after the hide committed"


def test_a_missing_version_comes_back_as_the_readers_counter_while_nothing_was_bumped(make_user, client_for):
    # The quiet case keeps warm-ups cheap: an evicted version alone costs one miss, not two.
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob)
    client = client_for(alice)
    warm(client)
    feed_cache._Redis.get().client.delete(feed_cache.post_key(post.pk))
    stored = _count("stored")
    feed(client)
    assert _count("stored") == stored + 1
    warm(client)


# --- a page built while the write's transaction is open ------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_page_built_during_the_write_transaction_is_never_stored(make_user, client_for, monkeypatch):
    """bob unfriends alice; while his transaction is open alice's page is built (in another
    connection: the pre-commit state) after the bump inside the transaction. The after-commit
    bump is lost (the worker was killed after COMMIT): the page must not have been stored."""
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob, "friends only")
    client = client_for(alice)
    warm(client)
    monkeypatch.setattr(feed_cache, "_bump", lambda *args: None)  # the after-commit bump is lost
    with transaction.atomic():
        account_services.friend_remove(user=bob, friend_id=alice.pk)
        # Another connection (a thread of its own): sees the pre-commit state.
        outcome = run_together([lambda: feed(client)], timeout=20, barrier=False)
        assert outcome.raised == [], outcome.raised
        assert post.pk in ids(outcome.results[0])
    monkeypatch.undo()
    assert post.pk not in ids(feed(client)), "unfriended viewer served the post from the cache"


def test_a_pending_version_is_never_matched_nor_stored_under(make_user, client_for):
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob)
    client = client_for(alice)
    warm(client)
    with transaction.atomic():
        services.like_add(user=bob, post_id=post.pk)  # open: p:<post> is pending
        redis = feed_cache._Redis.get()
        assert redis.client.get(feed_cache.post_key(post.pk)) == b"pending"
        assert (
            0 < redis.client.pttl(feed_cache.post_key(post.pk)) <= feed_cache.PENDING.total_seconds() * 1000
        )
        hits, skipped = _count("hit"), _count("skipped")
        feed(client)
        feed(client)
        assert _count("hit") == hits
        assert _count("skipped") == skipped + 2
    commit_feed_bumps()
    assert redis.client.get(feed_cache.post_key(post.pk)).isdigit()  # the after-commit bump's number


def test_a_version_stays_pending_while_another_writer_is_open(make_user):
    bob = make_user(handle="bob")
    post = publish(bob)
    redis = feed_cache._Redis.get()
    key = feed_cache.post_key(post.pk)
    feed_cache._bump_now([key], "first")
    feed_cache._bump_now([key], "second")
    feed_cache._bump([key], "second")  # the second commits first
    assert redis.client.get(key) == b"pending"  # the first is still open
    feed_cache._bump([key], "first")
    assert redis.client.get(key).isdigit()


# --- writers elsewhere: two deployments, one Redis ------------------------------------------------


def test_two_deployments_sharing_one_redis_database_never_see_each_others_pages(
    make_user, client_for, settings, monkeypatch
):
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    publish(bob)
    client = client_for(alice)
    warm(client)
    here = feed_cache._prefix()
    monkeypatch.setitem(django_settings.DATABASES["default"], "NAME", "another_deployment")
    assert feed_cache._prefix() != here
    hits = _count("hit")
    feed(client)  # the same user id, read by "another deployment": not this one's page
    assert _count("hit") == hits
    settings.MOMENTS_FEED_CACHE_PREFIX = "pinned"  # an explicit prefix wins
    assert feed_cache._prefix() == "pinned"


# --- a restored Redis -----------------------------------------------------------------------------


def test_after_a_redis_restore_the_clear_command_ends_every_page(make_user, client_for):
    """A Redis restored from an older snapshot (or a failover to a lagging replica) has lost the
    latest bumps but kept the entries older than them: ``moments_feed_cache_clear`` ends them."""
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    post = publish(bob)
    client = client_for(alice)
    warm(client)
    redis = feed_cache._Redis.get()
    snapshot = {
        key: redis.client.dump(key) for key in redis.client.scan_iter(match=f"{feed_cache._prefix()}:*")
    }
    services.post_hide(post_id=post.pk, by=None)
    assert ids(feed(client)) == []
    for key, value in snapshot.items():  # the restore
        redis.client.restore(key, 0, value, replace=True)
    assert ids(feed(client)) == [post.pk]  # the stale page is back: what the runbook is for
    call_command("moments_feed_cache_clear")
    hits = _count("hit")
    assert ids(feed(client)) == []
    assert _count("hit") == hits


def test_clear_never_moves_the_counter_back(make_user):
    redis = feed_cache._Redis.get()
    feed_cache._bump([feed_cache.post_key(1)])
    before = int(redis.client.get(feed_cache._seq_key()))
    generation = feed_cache.clear()
    assert generation > before
    redis.client.set(feed_cache._seq_key(), 5)  # a restore took it back
    assert feed_cache.clear() > before


# --- one entry per viewer ------------------------------------------------------------------------


def test_only_the_default_page_size_is_cached(make_user, client_for):
    alice, bob = make_user(handle="alice"), make_user(handle="bob")
    befriend(alice, bob)
    publish(bob)
    client = client_for(alice)
    commit_feed_bumps()
    hits, misses = _count("hit"), _count("miss")
    for size in (1, 5, 50):
        assert client.get("/api/v1/moments/feed", {"page_size": size}).status_code == 200
    assert (_count("hit"), _count("miss")) == (hits, misses)
    assert client.get("/api/v1/moments/feed", {"page_size": 20}).status_code == 200
    assert _count("miss") == misses + 1
