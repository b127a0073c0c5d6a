"""Media on S3-compatible object storage through django-storages, end to end.

The bucket lives in moto's S3 server, a real HTTP server on 127.0.0.1 that speaks the S3 wire
protocol; boto3 (through django-storages) talks to it exactly as it would to AWS or MinIO. The
settings are the ones ``superapp/settings.py`` builds from ``AWS_*`` variables.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import timedelta

import boto3
import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from moto.server import ThreadedMotoServer

from messaging.models import Attachment
from messaging.services import media as messaging_media
from moments.models import Media
from tests.messaging.conftest import image_upload as chat_image
from tests.moments.conftest import image_upload as moments_image

pytestmark = pytest.mark.django_db(transaction=True)

BUCKET = "superapp-media"
PUBLIC_READ = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/*",
        }
    ],
}
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


@pytest.fixture(scope="module")
def s3_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh bucket and the STORAGES that settings.py derives from the AWS_* environment."""
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                          aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    # What docs/ARCHITECTURE.md tells operators to do: objects are readable by URL.
    client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(PUBLIC_READ))
    for name, value in {**CREDENTIALS, "AWS_STORAGE_BUCKET_NAME": BUCKET, "AWS_S3_ENDPOINT_URL": s3_server,
                        "AWS_S3_REGION_NAME": "us-east-1", "AWS_S3_ADDRESSING_STYLE": "path"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    from superapp.settings import s3_media_storage

    media = s3_media_storage()
    assert media["BACKEND"] == "storages.backends.s3.S3Storage"
    with override_settings(STORAGES={**settings.STORAGES, "default": media}):
        yield client
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket_policy(Bucket=BUCKET)
    client.delete_bucket(Bucket=BUCKET)


def keys(client) -> set[str]:
    return {obj["Key"] for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_chat_image_is_stored_in_the_bucket_and_served_by_its_url(s3, s3_server, client_for, alice):
    response = client_for(alice).post(
        "/api/v1/messaging/media", {"kind": "image", "file": chat_image()}, format="multipart"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    att = Attachment.objects.get(pk=body["media_id"])
    assert {att.file.name, att.thumb.name} <= keys(s3)
    # Public, stable URLs (no signature that would expire inside stored events).
    assert body["url"] == f"{s3_server}/{BUCKET}/{att.file.name}"
    assert "Signature" not in body["url"] and "X-Amz" not in body["thumb_url"]
    stored = s3.get_object(Bucket=BUCKET, Key=att.file.name)["Body"].read()
    assert fetch(body["url"]) == stored and stored[:3] == b"\xff\xd8\xff"  # the processed JPEG
    assert fetch(body["thumb_url"])[:3] == b"\xff\xd8\xff"


def test_two_uploads_with_the_same_name_never_share_a_key(s3, client_for, alice):
    client = client_for(alice)
    names = set()
    for _ in range(2):
        response = client.post(
            "/api/v1/messaging/media", {"kind": "image", "file": chat_image()}, format="multipart"
        )
        assert response.status_code == 201
        att = Attachment.objects.get(pk=response.json()["media_id"])
        names |= {att.file.name, att.thumb.name}
    assert len(names) == 4 and names == keys(s3)


def test_avatar_replacement_deletes_the_old_objects(s3, client_for, alice):
    client = client_for(alice)
    from tests.accounts.test_images import plain, put_avatar

    assert put_avatar(client, plain("JPEG")).status_code == 200
    alice.refresh_from_db()
    first = {alice.avatar.name, alice.avatar_thumb.name}
    assert first == keys(s3)
    assert put_avatar(client, plain("PNG"), name="a.png", content_type="image/png").status_code == 200
    alice.refresh_from_db()
    second = {alice.avatar.name, alice.avatar_thumb.name}
    assert second.isdisjoint(first) and keys(s3) == second  # old objects deleted after commit
    me = client.get("/api/v1/me").json()
    assert fetch(me["avatar_url"]) == s3.get_object(Bucket=BUCKET, Key=alice.avatar.name)["Body"].read()


def test_moments_image_on_s3(s3, client_for, alice):
    response = client_for(alice).post(
        "/api/v1/moments/media", {"kind": "image", "file": moments_image()}, format="multipart"
    )
    assert response.status_code == 201, response.content
    item = Media.objects.get(pk=response.json()["id"])
    assert {item.file.name, item.thumb.name} == keys(s3)
    assert fetch(response.json()["url"])[:3] == b"\xff\xd8\xff"


def test_unused_chat_upload_is_purged_from_the_bucket(s3, client_for, alice):
    response = client_for(alice).post(
        "/api/v1/messaging/media", {"kind": "image", "file": chat_image()}, format="multipart"
    )
    att = Attachment.objects.get(pk=response.json()["media_id"])
    Attachment.objects.filter(pk=att.pk).update(created_at=timezone.now() - timedelta(days=2))
    assert messaging_media.attachments_purge_unused() == 1
    assert keys(s3) == set() and not Attachment.objects.filter(pk=att.pk).exists()


def test_recalled_chat_image_is_deleted_from_the_bucket(s3, client_for, alice, bob):
    from tests.messaging.conftest import direct

    conv = direct(alice, bob)
    client = client_for(alice)
    media = client.post(
        "/api/v1/messaging/media", {"kind": "image", "file": chat_image()}, format="multipart"
    ).json()
    sent = client.post(f"/api/v1/messaging/conversations/{conv.pk}/messages",
                       {"client_msg_id": "s3-recall", "kind": "image", "content": {"media_id": media["media_id"]}},
                       format="json")  # fmt: skip
    assert sent.status_code == 201, sent.content
    assert fetch(media["url"])[:3] == b"\xff\xd8\xff" and len(keys(s3)) == 2
    seq = sent.json()["message"]["seq"]
    assert client.post(f"/api/v1/messaging/conversations/{conv.pk}/messages/{seq}/recall").status_code == 200
    assert keys(s3) == set() and not Attachment.objects.filter(pk=media["media_id"]).exists()
    for url in (media["url"], media["thumb_url"]):  # the public URLs answer 404 now
        with pytest.raises(urllib.error.HTTPError) as gone:
            fetch(url)
        assert gone.value.code == 404
