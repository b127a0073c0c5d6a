"""Fan-out on write: small audiences in the publishing transaction, large ones by a Celery task
dispatched after commit; the task is idempotent and tolerates a post deleted meanwhile."""

from __future__ import annotations

import pytest

from moments import services, tasks
from moments.models import Post, Timeline
from tests.conftest import befriend

from .conftest import feed_ids, publish

pytestmark = pytest.mark.django_db


@pytest.fixture
def author_with_friends(make_user):
    author = make_user(handle="author")
    friends = [make_user() for _ in range(5)]
    for friend in friends:
        befriend(author, friend)
    return author, friends


def readers(post) -> set[int]:
    return set(Timeline.objects.filter(post=post).values_list("user_id", flat=True))


def test_small_audience_is_written_in_the_transaction(
    author_with_friends, settings, django_capture_on_commit_callbacks
):
    author, friends = author_with_friends
    settings.MOMENTS_FANOUT_INLINE_MAX = 6
    with django_capture_on_commit_callbacks() as callbacks:
        post = publish(author)
        assert readers(post) == {author.pk, *(f.pk for f in friends)}
    # Only the event doorbell and the feed cache's after-commit bump (moments.feed_cache): no task.
    assert len(callbacks) == 2 and [c.__module__ for c in callbacks].count("moments.feed_cache") == 1
    assert Post.objects.get(pk=post.pk).fanned_out_at is not None


def test_large_audience_goes_to_a_task_after_commit(
    author_with_friends, settings, django_capture_on_commit_callbacks
):
    author, friends = author_with_friends
    settings.MOMENTS_FANOUT_INLINE_MAX = 5
    with django_capture_on_commit_callbacks() as callbacks:
        post = publish(author)
    # Before commit only the author's own timeline has it; the task is queued on commit.
    assert readers(post) == {author.pk}
    assert Post.objects.get(pk=post.pk).fanned_out_at is None
    for callback in callbacks:
        callback()  # Celery runs eagerly in tests
    assert readers(post) == {author.pk, *(f.pk for f in friends)}
    assert Post.objects.get(pk=post.pk).fanned_out_at is not None


def test_fan_out_is_idempotent_and_fills_gaps(author_with_friends, settings):
    author, friends = author_with_friends
    settings.MOMENTS_FANOUT_INLINE_MAX = 1
    post = publish(author)
    Timeline.objects.create(user=friends[0], post=post, author=author, created=post.created_at)
    assert tasks.fan_out_post(post.pk) == 4  # a redelivered or partial run writes only what is missing
    assert tasks.fan_out_post(post.pk) == 0
    assert Timeline.objects.filter(post=post).count() == 6


def test_fan_out_of_a_deleted_post_does_nothing(author_with_friends, settings):
    author, _ = author_with_friends
    settings.MOMENTS_FANOUT_INLINE_MAX = 1
    post = publish(author)
    services.post_delete(user=author, post_id=post.pk)
    assert tasks.fan_out_post(post.pk) == 0
    assert not Timeline.objects.exists()


def test_fan_out_respects_share_lists_and_skips_blocked_friends(author_with_friends, settings):
    from accounts import services as account_services

    author, friends = author_with_friends
    settings.MOMENTS_FANOUT_INLINE_MAX = 1
    account_services.block_add(user=friends[4], target_id=author.pk)
    private = publish(author, visibility="private")
    include = publish(author, visibility="include", user_ids=[friends[0].pk])
    exclude = publish(author, visibility="exclude", user_ids=[friends[0].pk])
    for post in (private, include, exclude):
        tasks.fan_out_post(post.pk)
    assert readers(private) == {author.pk}
    assert readers(include) == {author.pk, friends[0].pk}
    assert readers(exclude) == {author.pk, *(f.pk for f in friends[1:4])}


def test_settings_changed_after_fan_out_apply_on_read(author_with_friends, client_for, settings):
    """Fan-out ignores per-friend settings: they are applied when reading, so they can change."""
    author, friends = author_with_friends
    services.friend_setting_update(owner=author, target_id=friends[0].pk, hide_my_posts=True)
    post = publish(author)
    assert friends[0].pk in readers(post)
    client = client_for(friends[0])
    assert feed_ids(client) == []
    services.friend_setting_update(owner=author, target_id=friends[0].pk, hide_my_posts=False)
    assert feed_ids(client) == [post.pk]
