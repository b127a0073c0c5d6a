"""Posts over REST: media upload, publish (text, images, video, link, place), read, delete,
the home feed and albums (pagination, query counts). Success, bad input, someone else's object."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from moments import services
from moments.models import Media, Post, PostAudience, Timeline
from superapp.core.events import events_since
from tests.conftest import befriend
from tests.core.test_errors import assert_error

from .conftest import MP4_HEAD, album_ids, feed_ids, image_upload, publish, video_upload

pytestmark = pytest.mark.django_db

POSTS = "/api/v1/moments/posts"
MEDIA = "/api/v1/moments/media"


def upload_image(client, **kwargs):
    response = client.post(MEDIA, {"kind": "image", "file": image_upload(**kwargs)}, format="multipart")
    assert response.status_code == 201, response.content
    return response.json()


# --- media -------------------------------------------------------------------------------------


def test_upload_image_is_processed_with_a_thumbnail(client_for, alice):
    body = upload_image(client_for(alice), size=(3000, 1500))
    assert body["kind"] == "image"
    assert body["content_type"] == "image/jpeg"
    assert (body["width"], body["height"]) == (3000, 1500)
    item = Media.objects.get(pk=body["id"])
    assert item.owner == alice and item.post is None
    assert default_storage.exists(item.file.name) and default_storage.exists(item.thumb.name)
    assert body["url"].endswith(".full.jpg") and body["thumb_url"].endswith(".thumb.jpg")


def test_upload_video_with_a_cover(client_for, alice):
    response = client_for(alice).post(
        MEDIA, {"kind": "video", "file": video_upload(), "cover": image_upload()}, format="multipart"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["content_type"] == "video/mp4" and body["size"] == len(MP4_HEAD)
    assert body["url"].endswith(".mp4") and body["thumb_url"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "image"}, "file"),
        ({"kind": "gif", "file": "IMAGE"}, "kind"),
        ({"kind": "image", "file": "VIDEO"}, "file"),  # a video is not an image
        ({"kind": "video", "file": "IMAGE"}, "file"),  # nor the other way round
        ({"kind": "video", "file": "TEXT"}, "file"),
        ({"kind": "image", "file": "IMAGE", "cover": "IMAGE"}, "cover"),
    ],
)
def test_upload_bad_input(client_for, alice, data, field):
    files = {"IMAGE": image_upload, "VIDEO": video_upload, "TEXT": lambda: video_upload("a.mp4", b"hello")}
    data = {k: files[v]() if v in files else v for k, v in data.items()}
    error = assert_error(client_for(alice).post(MEDIA, data, format="multipart"), 400)
    assert field in error["fields"]
    assert not Media.objects.exists()


def test_upload_too_large_video(client_for, alice, settings):
    settings.MOMENTS_VIDEO_MAX_BYTES = 50
    error = assert_error(
        client_for(alice).post(MEDIA, {"kind": "video", "file": video_upload()}, format="multipart"),
        400,
        "invalid_video",
    )
    assert "file" in error["fields"]


def test_orphan_uploads_are_purged(client_for, alice, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    body = upload_image(client_for(alice))
    item = Media.objects.get(pk=body["id"])
    assert services.media_purge_orphans() == 0
    Media.objects.filter(pk=item.pk).update(created_at=timezone.now() - timedelta(days=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.media_purge_orphans() == 1
    assert not default_storage.exists(item.file.name)


# --- publish -----------------------------------------------------------------------------------


def test_publish_text_with_a_place(client_for, alice, bob, django_capture_on_commit_callbacks):
    befriend(alice, bob)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(alice).post(
            POSTS,
            {
                "text": "  Hello  ",
                "location": {"name": "The Bund", "latitude": 31.2401234567, "longitude": 121.49},
            },
            format="json",
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["text"] == "Hello" and body["kind"] == "text"
    assert body["location"] == {"name": "The Bund", "latitude": 31.240123, "longitude": 121.49}
    assert body["is_mine"] is True and body["visibility"] == "friends"
    assert body["author"]["handle"] == "alice" and body["likes"] == [] and body["comments"] == []
    post = Post.objects.get(pk=body["id"])
    assert set(Timeline.objects.filter(post=post).values_list("user_id", flat=True)) == {alice.pk, bob.pk}
    assert post.fanned_out_at is not None
    # The author's other devices learn of it.
    assert [e["type"] for e in events_since(user_id=alice.pk, since=0)["events"]] == ["moments.post.created"]


def test_publish_images_in_the_given_order(client_for, alice):
    client = client_for(alice)
    ids = [upload_image(client)["id"] for _ in range(3)]
    response = client.post(POSTS, {"text": "", "media_ids": [ids[2], ids[0], ids[1]]}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "images"
    assert [m["id"] for m in body["media"]] == [ids[2], ids[0], ids[1]]
    # An upload goes into one post only.
    assert_error(client.post(POSTS, {"media_ids": [ids[0]]}, format="json"), 400)


def test_publish_nine_images_not_ten(client_for, alice):
    client = client_for(alice)
    ids = [upload_image(client, size=(8, 8))["id"] for _ in range(10)]
    error = assert_error(client.post(POSTS, {"media_ids": ids}, format="json"), 400)
    assert "media_ids" in error["fields"]
    assert client.post(POSTS, {"media_ids": ids[:9]}, format="json").status_code == 201


def test_publish_one_video(client_for, alice):
    client = client_for(alice)
    video = client.post(MEDIA, {"kind": "video", "file": video_upload()}, format="multipart").json()
    response = client.post(POSTS, {"text": "watch", "media_ids": [video["id"]]}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["kind"] == "video"
    assert response.json()["media"][0]["content_type"] == "video/mp4"


def test_publish_a_link_card(client_for, alice):
    link = {"url": "https://example.com/a", "title": "A page", "description": "About it",
            "thumb_url": "https://cdn.example.com/t.jpg"}  # fmt: skip
    response = client_for(alice).post(POSTS, {"text": "read this", "link": link}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["kind"] == "link"
    assert response.json()["link"] == link


def test_publish_share_with_resolves_tags_at_post_time(client_for, alice, bob, carol, dave):
    from accounts import services as account_services

    for friend in (bob, carol, dave):
        befriend(alice, friend)
    tag = account_services.tag_create(owner=alice, name="close", member_ids=[carol.pk])
    response = client_for(alice).post(
        POSTS,
        {"text": "x", "visibility": "include", "user_ids": [bob.pk], "tag_ids": [tag.pk]},
        format="json",
    )
    assert response.status_code == 201, response.content
    post_id = response.json()["id"]
    assert set(PostAudience.objects.filter(post_id=post_id).values_list("user_id", flat=True)) == {
        bob.pk,
        carol.pk,
    }
    assert set(Timeline.objects.filter(post_id=post_id).values_list("user_id", flat=True)) == {
        alice.pk, bob.pk, carol.pk,
    }  # fmt: skip
    # Others never learn how a post was shared.
    assert client_for(bob).get(f"{POSTS}/{post_id}").json()["visibility"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, None),  # empty post
        ({"text": "   "}, None),
        ({"text": "x" * 2001}, "text"),
        ({"text": 5, "media_ids": "x"}, "media_ids"),
        ({"text": "x", "visibility": "public"}, "visibility"),
        ({"text": "x", "visibility": "include"}, "user_ids"),  # nobody chosen
        ({"text": "x", "visibility": "friends", "user_ids": [1]}, "visibility"),
        ({"text": "x", "visibility": "include", "user_ids": ["STRANGER"]}, "user_ids"),
        ({"text": "x", "visibility": "exclude", "tag_ids": ["FOREIGN_TAG"]}, "tag_ids"),
        ({"text": "x", "media_ids": ["FOREIGN_MEDIA"]}, "media_ids"),
        ({"text": "x", "media_ids": [999999]}, "media_ids"),
        ({"text": "x", "media_ids": ["IMAGE", "IMAGE"]}, "media_ids"),  # same upload twice
        ({"text": "x", "media_ids": ["IMAGE", "VIDEO"]}, "media_ids"),
        ({"text": "x", "media_ids": ["VIDEO", "VIDEO2"]}, "media_ids"),
        ({"link": {"url": "https://e.com"}}, "link.title"),
        ({"link": {"url": "javascript:alert(1)", "title": "t"}}, "link.url"),
        ({"link": {"url": "ftp://e.com/x", "title": "t"}}, "link.url"),
        (
            {"link": {"url": "https://e.com", "title": "t", "thumb_url": "file:///etc/passwd"}},
            "link.thumb_url",
        ),
        ({"link": {"url": "https://e.com", "title": "t"}, "media_ids": ["IMAGE"]}, "link"),
        ({"text": "x", "location": {"name": "x", "latitude": 91, "longitude": 0}}, "location.latitude"),
        ({"text": "x", "location": {"name": "x", "latitude": 1}}, "location.non_field_errors"),
        ({"text": "x", "location": {"latitude": 1, "longitude": 1}}, "location.name"),
    ],
)
def test_publish_bad_input(client_for, alice, make_user, body, field):
    from accounts import services as account_services

    client = client_for(alice)
    other = make_user(handle="other")
    refs = {
        "STRANGER": other.pk,
        "FOREIGN_TAG": account_services.tag_create(owner=other, name="theirs").pk,
        "FOREIGN_MEDIA": upload_image(client_for(other))["id"],
        "IMAGE": upload_image(client)["id"],
        "VIDEO": client.post(MEDIA, {"kind": "video", "file": video_upload()}, format="multipart").json()[
            "id"
        ],
        "VIDEO2": client.post(MEDIA, {"kind": "video", "file": video_upload()}, format="multipart").json()[
            "id"
        ],
    }
    body = {k: [refs.get(x, x) for x in v] if isinstance(v, list) else v for k, v in body.items()}
    error = assert_error(client.post(POSTS, body, format="json"), 400)
    if field:
        assert field in error["fields"], error
    else:
        assert error["code"] == "empty_post"
    assert not Post.objects.exists()
    assert not Media.objects.filter(post__isnull=False).exists()


def test_publish_requires_authentication(api):
    assert_error(api.post(POSTS, {"text": "x"}, format="json"), 401, "not_authenticated")
    assert_error(api.get("/api/v1/moments/feed"), 401, "not_authenticated")


# --- read and delete ---------------------------------------------------------------------------


def test_post_detail_not_found_for_unknown_or_unseen(client_for, alice, bob):
    post = publish(alice)
    assert_error(client_for(bob).get(f"{POSTS}/{post.pk}"), 404, "not_found")
    assert_error(client_for(bob).get(f"{POSTS}/999999"), 404, "not_found")


def test_delete_own_post_removes_it_everywhere_at_once(
    client_for, alice, bob, django_capture_on_commit_callbacks
):
    befriend(alice, bob)
    client = client_for(alice)
    image = upload_image(client)
    post_id = client.post(POSTS, {"media_ids": [image["id"]]}, format="json").json()["id"]
    services.like_add(user=bob, post_id=post_id)
    services.comment_create(user=bob, post_id=post_id, text="hi")
    files = list(Media.objects.filter(post_id=post_id).values_list("file", "thumb").get())
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"{POSTS}/{post_id}").status_code == 204
    assert feed_ids(client_for(bob)) == [] and feed_ids(client) == []
    assert album_ids(client_for(bob), alice.pk) == []
    assert not Timeline.objects.filter(post_id=post_id).exists()
    assert not any(default_storage.exists(name) for name in files)
    assert client.get("/api/v1/moments/notifications").json()["results"] == []
    types = [e["type"] for e in events_since(user_id=alice.pk, since=0)["events"]]
    assert types[-2:] == ["moments.post.deleted", "moments.interaction.removed"]
    assert_error(client.delete(f"{POSTS}/{post_id}"), 404)


def test_cannot_delete_someone_elses_post(client_for, alice, bob, carol):
    befriend(alice, bob)
    post = publish(alice)
    assert_error(client_for(bob).delete(f"{POSTS}/{post.pk}"), 403, "not_author")
    assert_error(client_for(carol).delete(f"{POSTS}/{post.pk}"), 404)  # cannot even see it
    assert Post.objects.filter(pk=post.pk).exists()


# --- feed and album ----------------------------------------------------------------------------


def test_feed_is_newest_first_and_cursor_paginated(client_for, alice, bob, carol):
    befriend(alice, bob)
    befriend(alice, carol)
    posts = [publish(author, f"p{i}") for i in range(5) for author in (bob, carol)]
    client = client_for(alice)
    first = client.get("/api/v1/moments/feed", {"page_size": 4}).json()
    assert [p["id"] for p in first["results"]] == [p.pk for p in posts[::-1][:4]]
    seen = [p["id"] for p in first["results"]]
    url = first["next"]
    publish(bob, "newer")  # a post made while paging does not shift the pages
    while url:
        page = client.get(url).json()
        seen += [p["id"] for p in page["results"]]
        url = page["next"]
    assert seen == [p.pk for p in posts[::-1]]


@pytest.mark.parametrize("page_size", ["0", "x", "-1"])
def test_feed_bad_page_size_falls_back_to_default(client_for, alice, page_size):
    assert client_for(alice).get("/api/v1/moments/feed", {"page_size": page_size}).status_code == 200


@pytest.mark.parametrize(
    "position",
    [None, "garbage", "2026-01-01T00:00:00|x", "|1",
     "2026-01-01T00:00:00+00:00|99999999999999999999", "2026-01-01T00:00:00+00:00|0"],
)  # fmt: skip
def test_feed_bad_cursor(client_for, alice, position):
    import base64
    from urllib.parse import urlencode

    cursor = "garbage" if position is None else base64.b64encode(urlencode({"p": position}).encode()).decode()
    assert_error(client_for(alice).get("/api/v1/moments/feed", {"cursor": cursor}), 404)


def test_feed_cursor_without_a_time_zone_is_read_as_utc(client_for, alice):
    import base64
    from urllib.parse import urlencode

    post = publish(alice)
    cursor = base64.b64encode(urlencode({"p": "2999-01-01T00:00:00|1"}).encode()).decode()
    assert [
        p["id"] for p in client_for(alice).get("/api/v1/moments/feed", {"cursor": cursor}).json()["results"]
    ] == [post.pk]


def _busy_post(author, likers, commenters, client):
    image = upload_image(client, size=(8, 8))
    post = publish(author, "busy", media_ids=[image["id"]])
    for user in likers:
        services.like_add(user=user, post_id=post.pk)
    for user in commenters:
        services.comment_create(user=user, post_id=post.pk, text="c")
    return post


def test_feed_query_count_does_not_grow(client_for, alice, make_user, django_assert_num_queries):
    friends = [make_user() for _ in range(4)]
    everyone = [alice, *friends]
    for i, a in enumerate(everyone):
        for b in everyone[i + 1 :]:
            befriend(a, b)
    client = client_for(alice)
    for n in (2, 8):
        while Post.objects.count() < n:
            author = friends[Post.objects.count() % 4]
            _busy_post(author, friends, friends[:2], client_for(author))
        # auth (the session joined with its user), then the page in one statement (moments.feed)
        with django_assert_num_queries(2):
            response = client.get("/api/v1/moments/feed")
        assert len(response.json()["results"]) == n
        assert all(len(p["likes"]) == 4 and len(p["comments"]) == 2 for p in response.json()["results"])


def test_album_query_count_does_not_grow(client_for, alice, bob, make_user, django_assert_num_queries):
    befriend(alice, bob)
    client = client_for(bob)
    for n in (2, 6):
        while Post.objects.count() < n:
            _busy_post(alice, [bob], [bob], client_for(alice))
        # auth, the author, profile visibility (2), the page, media, likes, comments
        with django_assert_num_queries(8):
            response = client.get(f"/api/v1/moments/users/{alice.pk}/posts")
        assert len(response.json()["results"]) == n


def test_album_of_someone_unknown_is_404(client_for, alice, bob):
    publish(bob)
    assert_error(client_for(alice).get(f"/api/v1/moments/users/{bob.pk}/posts"), 404)
    assert_error(client_for(alice).get("/api/v1/moments/users/999999/posts"), 404)


def test_own_album_shows_everything_of_mine(client_for, alice, bob):
    befriend(alice, bob)
    posts = [publish(alice, visibility=v) for v in ("friends", "private")]
    services.moments_settings_update(user=alice, visible_days=3)
    assert album_ids(client_for(alice), alice.pk) == [p.pk for p in posts[::-1]]
    assert album_ids(client_for(bob), alice.pk) == [posts[0].pk]


def test_long_comment_threads_are_cut_in_the_feed(client_for, alice, bob, settings):
    settings.MOMENTS_COMMENTS_SHOWN = 3
    befriend(alice, bob)
    post = publish(alice)
    for i in range(5):
        services.comment_create(user=bob, post_id=post.pk, text=f"c{i}")
    entry = client_for(alice).get("/api/v1/moments/feed").json()["results"][0]
    assert [c["text"] for c in entry["comments"]] == ["c0", "c1", "c2"]
    assert entry["more_comments"] is True
    page = client_for(alice).get(f"{POSTS}/{post.pk}/comments", {"page_size": 2}).json()
    assert [c["text"] for c in page["results"]] == ["c0", "c1"] and page["next"]


ENDPOINTS = [
    ("get", "/api/v1/moments/feed"),
    ("post", "/api/v1/moments/posts"),
    ("get", "/api/v1/moments/posts/1"),
    ("delete", "/api/v1/moments/posts/1"),
    ("put", "/api/v1/moments/posts/1/like"),
    ("delete", "/api/v1/moments/posts/1/like"),
    ("get", "/api/v1/moments/posts/1/comments"),
    ("post", "/api/v1/moments/posts/1/comments"),
    ("post", "/api/v1/moments/posts/1/report"),
    ("delete", "/api/v1/moments/comments/1"),
    ("post", "/api/v1/moments/media"),
    ("get", "/api/v1/moments/users/1/posts"),
    ("get", "/api/v1/moments/notifications"),
    ("get", "/api/v1/moments/notifications/unread-count"),
    ("post", "/api/v1/moments/notifications/read"),
    ("get", "/api/v1/moments/settings"),
    ("patch", "/api/v1/moments/settings"),
    ("get", "/api/v1/moments/friend-settings"),
    ("get", "/api/v1/moments/friend-settings/1"),
    ("patch", "/api/v1/moments/friend-settings/1"),
]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_every_endpoint_requires_authentication(api, method, url):
    assert_error(getattr(api, method)(url, {}, format="json"), 401, "not_authenticated")


def test_every_endpoint_is_in_this_list():
    from django.urls import get_resolver

    moments = next(p for p in get_resolver().url_patterns if str(p.pattern) == "api/v1/")
    routes = {
        str(p.pattern) + str(q.pattern)
        for p in moments.url_patterns
        if str(p.pattern) == "moments/"
        for q in p.url_patterns
    }
    listed = {url.removeprefix("/api/v1/").replace("/1", "/<x>") for _m, url in ENDPOINTS}
    normalised = {
        r.replace("<int:post_id>", "<x>").replace("<int:comment_id>", "<x>").replace("<int:user_id>", "<x>")
        for r in routes
    }
    assert normalised == listed
