"""The feed statement is prepared once per database connection (moments/feed.py): before the first
page (unless an earlier attempt left it prepared), executed afterwards, prepared again when the server forgot it, and plain
when MOMENTS_FEED_PREPARED is off; PostgreSQL's generic plan gives the same pages. Through a real
ASGI server too (psycopg 3 and Django's pool, where one connection serves several threads)."""

from __future__ import annotations

import httpx
import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from moments import feed as feed_sql
from moments import selectors, services
from superapp.core import prepared
from tests.conftest import befriend, login_tokens
from tests.processes import asgi_servers

from .conftest import publish


def _forget_prepared() -> None:
    connection.ensure_connection()
    prepared.forget(connection.connection)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")


@pytest.fixture
def friends(make_user):
    ann, ben, cat = make_user(handle="ann"), make_user(handle="ben"), make_user(handle="cat")
    befriend(ann, ben)
    befriend(ann, cat)
    befriend(ben, cat)
    for author in (ann, ben, cat, ben, cat):
        post = publish(author, f"by {author.handle}")
        services.like_add(user=ann, post_id=post.pk)
        services.comment_create(user=ben, post_id=post.pk, text="nice")
    return ann, ben, cat


def _page(viewer, limit=20, before=None):
    return feed_sql.feed_page(viewer_id=viewer.pk, before=before, limit=limit)


@pytest.mark.django_db
def test_first_page_prepares_once_then_executes(friends):
    ann = friends[0]
    _forget_prepared()
    reference = selectors.feed_page_orm(viewer_id=ann.pk, before=None, limit=20)

    def prepared_names() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'moments_feed_%%'")
            return [row[0] for row in cursor.fetchall()]

    assert prepared_names() == []
    with CaptureQueriesContext(connection) as first:
        assert _page(ann) == reference
    assert prepared_names() == [feed_sql.statement_name()]
    with CaptureQueriesContext(connection) as second:
        assert _page(ann) == reference
    # The preparation runs on the driver's cursor: Django's log shows one EXECUTE per page.
    for log in (first, second):
        assert len(log) == 1 and log[0]["sql"].startswith(f"EXECUTE {feed_sql.statement_name()}")
    assert prepared_names() == [feed_sql.statement_name()]


@pytest.mark.django_db(transaction=True)
def test_a_first_page_that_fails_leaves_the_feed_working_on_that_connection(friends):
    """PREPARE is not transactional: when the first EXECUTE on a connection fails (here a post id
    out of bigint's range), the statement stays prepared; later pages must not PREPARE it again
    (42P05 "already exists" on every page of that connection, for every user)."""
    ann, ben, _ = friends
    _forget_prepared()
    when = selectors.feed_page_orm(viewer_id=ann.pk, before=None, limit=20).posts[0]["created_at"]
    from datetime import datetime

    with pytest.raises(DatabaseError):
        _page(ann, before=(datetime.fromisoformat(when.replace("Z", "+00:00")), 10**20))
    feed_sql._statement().prepared_on.discard(
        connection.connection
    )  # as if the failure came before it was noted
    for viewer in (ann, ben):
        assert _page(viewer) == selectors.feed_page_orm(viewer_id=viewer.pk, before=None, limit=20)


@pytest.mark.django_db
def test_the_generic_plan_gives_the_same_pages(friends):
    _forget_prepared()
    for _ in range(4):  # PostgreSQL plans the first five executions, then keeps a generic plan
        for viewer in friends:
            for limit in (1, 2, 20):
                expected = selectors.feed_page_orm(viewer_id=viewer.pk, before=None, limit=limit)
                assert _page(viewer, limit) == expected
                if expected.next_position:
                    after = selectors.feed_page_orm(
                        viewer_id=viewer.pk, before=expected.next_position, limit=limit
                    )
                    assert _page(viewer, limit, expected.next_position) == after
    with connection.cursor() as cursor:
        cursor.execute("SELECT generic_plans FROM pg_prepared_statements WHERE name LIKE 'moments_feed_%%'")
        assert cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_a_statement_the_server_forgot_is_prepared_again(friends):
    ann = friends[0]
    expected = selectors.feed_page_orm(viewer_id=ann.pk, before=None, limit=20)
    assert _page(ann) == expected
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # what DISCARD ALL or a pooler's reset would do
    with CaptureQueriesContext(connection) as queries:
        assert _page(ann) == expected
    # The EXECUTE failed (26000), the statement was prepared again and the EXECUTE repeated.
    assert [q["sql"].split()[0] for q in queries] == ["EXECUTE", "EXECUTE"]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE name = %s", [feed_sql.statement_name()]
        )
        assert cursor.fetchone()[0] == 1


@pytest.mark.django_db(transaction=True)
def test_inside_a_callers_transaction_a_forgotten_statement_is_not_retried(friends):
    ann = friends[0]
    _page(ann)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    # The failed EXECUTE aborted the caller's transaction: retrying in it would fail again.
    with pytest.raises(DatabaseError), transaction.atomic():
        _page(ann)
    assert _page(ann).posts  # outside, it recovers


@pytest.mark.django_db
def test_off_runs_the_plain_statement(friends, settings):
    settings.MOMENTS_FEED_PREPARED = False
    ann = friends[0]
    expected = selectors.feed_page_orm(viewer_id=ann.pk, before=None, limit=20)
    with CaptureQueriesContext(connection) as queries:
        assert _page(ann) == expected
    assert len(queries) == 1 and queries[0]["sql"].lstrip().startswith("WITH friends AS")


@pytest.mark.django_db(transaction=True)
def test_through_a_real_asgi_server_on_psycopg3_and_its_pool(friends):
    ann = friends[0]
    headers = {"Authorization": f"Bearer {login_tokens(ann)['access']}"}
    expected = [p["id"] for p in selectors.feed_page_orm(viewer_id=ann.pk, before=None, limit=2).posts]
    everything = [p["id"] for p in selectors.feed_page_orm(viewer_id=ann.pk, before=None, limit=50).posts]
    with asgi_servers(1) as (url,), httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for _ in range(8):  # past the five planned executions, on whichever pooled connection
            first = client.get("/api/v1/moments/feed", params={"page_size": 2})
            assert first.status_code == 200, first.text
            assert [p["id"] for p in first.json()["results"]] == expected
            ids, link = [], "/api/v1/moments/feed?page_size=2"
            while link:
                page = client.get(link).json()
                ids += [p["id"] for p in page["results"]]
                link = page["next"]
            assert ids == everything
