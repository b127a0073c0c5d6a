"""Helpers for the messaging tests: friends, direct chats, groups, sends, images."""

from __future__ import annotations

import io
import itertools

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from messaging import presence, services
from tests.conftest import befriend

_ids = itertools.count(1)


def cmid() -> str:
    return f"c-{next(_ids)}"


def send(sender, conversation=None, *, to=None, text="hello", kind="text", **kwargs):
    """Send through the service; returns the stored Message."""
    return services.message_send(
        sender_id=sender.pk,
        client_msg_id=kwargs.pop("client_msg_id", None) or cmid(),
        kind=kind,
        conversation_id=getattr(conversation, "pk", conversation) if to is None else None,
        to_user_id=to.pk if to is not None else None,
        text=text if kind == "text" else kwargs.pop("text", ""),
        content_fields=kwargs.pop("content", None),
        **kwargs,
    ).message


def direct(a, b):
    """A direct conversation of two friends (made by a first message from a)."""
    befriend(a, b)
    return send(a, to=b, text="first").conversation


def group(owner, *members, name="group"):
    for m in members:
        befriend(owner, m)
    return services.group_create(creator_id=owner.pk, name=name, member_ids=[m.pk for m in members])


def image_bytes(fmt="JPEG", size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def image_upload(name="photo.jpg", **kwargs) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, image_bytes(**kwargs), content_type="image/jpeg")


@pytest.fixture(autouse=True)
def _fresh_presence():
    presence.store().clear()
    yield
    presence.store().clear()
