"""Helpers for the Moments tests: publishing, images, reading feeds and albums."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from PIL import Image

from moments import services
from moments.models import Post


def image_bytes(fmt: str = "JPEG", size=(64, 48), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def image_upload(name: str = "photo.jpg", **kwargs) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, image_bytes(**kwargs), content_type="image/jpeg")


MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64


def video_upload(name: str = "clip.mp4", data: bytes = MP4_HEAD) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="video/mp4")


def commit_feed_bumps() -> None:
    """Run the feed cache's after-commit bumps of the writes made so far, as their commit would
    have. A test without ``transaction=True`` runs inside one transaction that never commits, so
    those bumps never run and the versions the writes touched stay "pending" (never cached:
    correct, but no hit to test). Call it before a read that stands for a later request. While
    an atomic block of the test's own is open (a write's transaction), nothing is run."""
    if not connection.in_atomic_block:
        return
    if any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks):
        return
    due = [entry for entry in connection.run_on_commit if entry[1].__module__ == "moments.feed_cache"]
    if due:
        connection.run_on_commit = [entry for entry in connection.run_on_commit if entry not in due]
        for _sids, func, _robust in due:
            func()


def publish(author, text: str = "hello", **kwargs) -> Post:
    return services.post_publish(author=author, text=text, **kwargs)


def feed_ids(client, **params) -> list[int]:
    response = client.get("/api/v1/moments/feed", params)
    assert response.status_code == 200, response.content
    return [p["id"] for p in response.json()["results"]]


def album_ids(client, user_id, **params) -> list[int]:
    response = client.get(f"/api/v1/moments/users/{user_id}/posts", params)
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.content
    return [p["id"] for p in response.json()["results"]]


@pytest.fixture
def dave(make_user):
    return make_user(handle="dave")
