"""Chat media: upload first (``attachment_upload``), then send a message naming its ``media_id``.

Images go through ``superapp.core.images.process_image`` (decoded fully, EXIF orientation
applied, every metadata block including GPS dropped, a thumbnail made). Video and voice are
recognised by their first bytes (the client's content type is not trusted), files are kept as
opaque bytes under a ``.bin`` name so that no web server ever serves one as a page. Files go
through Django's default storage: the local disk by default, S3-compatible storage when
configured.

Recalled media is deleted (``attachment_purge_recalled``) once no message that is not recalled
carries its ``media_id``. Every path that puts a ``media_id`` into a new message (send,
forward) first locks the attachment row FOR KEY SHARE (``attachments_lock_shared``); the purge
locks it FOR UPDATE before it counts references, so it either sees the new message or deletes the
row first and the writer finds no upload.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.fields.json import KT
from django.utils import timezone
from django.utils.text import get_valid_filename
from django.utils.translation import gettext as _

from superapp.core.errors import ValidationFailed
from superapp.core.images import process_image

from ..models import Attachment, Message

# (signature check, mime, extension). ISO BMFF ("ftyp" at offset 4) covers MP4, MOV and M4A.
VIDEO_SIGNATURES = (
    (lambda h: h[4:8] == b"ftyp" and h[8:10] != b"M4", "video/mp4", "mp4"),
    (lambda h: h[:4] == b"\x1a\x45\xdf\xa3", "video/webm", "webm"),
)
VOICE_SIGNATURES = (
    (lambda h: h[4:8] == b"ftyp", "audio/mp4", "m4a"),
    (lambda h: h[:4] == b"OggS", "audio/ogg", "ogg"),
    (lambda h: h[:6] == b"#!AMR\n", "audio/amr", "amr"),
    (lambda h: h[:2] in (b"\xff\xf1", b"\xff\xf9"), "audio/aac", "aac"),
    (lambda h: h[:3] == b"ID3" or h[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"), "audio/mpeg", "mp3"),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WAVE", "audio/wav", "wav"),
)


def _invalid(field: str, message: str, code: str = "invalid_media") -> ValidationFailed:
    return ValidationFailed(message, code=code, fields={field: [message]})


def _check_size(upload, limit: int) -> None:
    if upload.size is None or upload.size == 0:
        raise _invalid("file", _("The file is empty."))
    if upload.size > limit:
        raise _invalid(
            "file", _("The file is larger than %(mb)d MB.") % {"mb": limit // (1024 * 1024)}, "file_too_large"
        )


def _sniff(upload, signatures) -> tuple[str, str]:
    upload.seek(0)
    head = upload.read(32)
    upload.seek(0)
    for check, mime, ext in signatures:
        if check(head):
            return mime, ext
    raise _invalid("file", _("This file type is not accepted here."), "unsupported_media_type")


def _duration(value: Any, *, required: bool, maximum: int) -> int | None:
    if value in (None, ""):
        if required:
            raise _invalid("duration", _("The duration in seconds is required."))
        return None
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise _invalid("duration", _("The duration is a whole number of seconds.")) from None
    if not 1 <= seconds <= maximum:
        raise _invalid("duration", _("The duration must be 1 to %(max)d seconds.") % {"max": maximum})
    return seconds


@transaction.atomic
def attachment_upload(*, owner_id: int, kind: str, upload, duration: Any = None) -> Attachment:
    """Validate and store one upload; 400 for anything wrong (nothing is stored then)."""
    name = get_valid_filename(upload.name or "file")[:200] if upload.name else "file"
    att = Attachment(owner_id=owner_id, kind=kind, name=name)
    if kind == Attachment.Kind.IMAGE:
        full, thumb = settings.MESSAGING_IMAGE_SIZES
        image = process_image(
            upload, max_bytes=settings.MESSAGING_IMAGE_MAX_BYTES, max_pixels=settings.MESSAGING_IMAGE_MAX_PIXELS,
            full_size=full, thumb_size=thumb, field="file",
        )  # fmt: skip
        att.mime = "image/png" if image.full.name.endswith(".png") else "image/jpeg"
        att.width, att.height, att.size = image.width, image.height, image.full.size
        att.file.save(image.full.name, image.full, save=False)
        att.thumb.save(image.thumb.name, image.thumb, save=False)
    elif kind in (Attachment.Kind.VIDEO, Attachment.Kind.VOICE):
        video = kind == Attachment.Kind.VIDEO
        _check_size(
            upload, settings.MESSAGING_VIDEO_MAX_BYTES if video else settings.MESSAGING_VOICE_MAX_BYTES
        )
        att.mime, ext = _sniff(upload, VIDEO_SIGNATURES if video else VOICE_SIGNATURES)
        att.duration = _duration(
            duration, required=not video,
            maximum=settings.MESSAGING_VIDEO_MAX_SECONDS if video else settings.MESSAGING_VOICE_MAX_SECONDS,
        )  # fmt: skip
        att.size = upload.size
        att.file.save(f"{kind}.{ext}", upload, save=False)
    elif kind == Attachment.Kind.FILE:
        _check_size(upload, settings.MESSAGING_FILE_MAX_BYTES)
        att.mime = "application/octet-stream"
        att.size = upload.size
        att.file.save("file.bin", upload, save=False)
    else:
        raise _invalid("kind", _("Unknown media kind."), "unknown_kind")
    try:
        att.save()
    except Exception:
        _delete_files(att)
        raise
    return att


def _delete_files(att: Attachment) -> None:
    for f in (att.file, att.thumb):
        if f:
            f.storage.delete(f.name)


def attachment_content(att: Attachment) -> dict[str, Any]:
    """What a media message carries (a snapshot: forwarding copies it as it is)."""
    return {
        "media_id": str(att.pk),
        "url": att.file.url,
        "thumb_url": att.thumb.url if att.thumb else None,
        "name": att.name,
        "mime": att.mime,
        "size": att.size,
        "width": att.width,
        "height": att.height,
        "duration": att.duration,
    }


def attachments_purge_unused() -> int:
    """Delete uploads never sent within ``MESSAGING_ORPHAN_MEDIA_HOURS`` (files and rows)."""
    cutoff = timezone.now() - timedelta(hours=settings.MESSAGING_ORPHAN_MEDIA_HOURS)
    count = 0
    for att in Attachment.objects.filter(used_at__isnull=True, created_at__lt=cutoff)[:1000]:
        with transaction.atomic():
            if Attachment.objects.filter(pk=att.pk, used_at__isnull=True).delete()[0]:
                transaction.on_commit(lambda a=att: _delete_files(a))
                count += 1
    return count


def _uuids(values: Iterable[Any]) -> list[str]:
    ids = set()
    for value in values:
        try:
            ids.add(str(uuid.UUID(str(value))))
        except ValueError:
            continue
    return sorted(ids)


_LOCK_SHARED = "SELECT * FROM messaging_attachment WHERE id = ANY(%s::uuid[]) ORDER BY id FOR KEY SHARE"
_LOCK_SHARED_OWNED = "SELECT * FROM messaging_attachment WHERE id = ANY(%s::uuid[]) AND owner_id = %s ORDER BY id FOR KEY SHARE"


def attachments_lock_shared(
    *, media_ids: Iterable[Any], owner_id: int | None = None
) -> dict[str, Attachment]:
    """The attachments among ``media_ids`` (of ``owner_id`` when given) by ``str(id)``, each row
    locked FOR KEY SHARE until the caller's transaction ends (the caller must be in one).

    KEY SHARE, not the ORM's FOR UPDATE: sends and forwards of one upload must not queue behind
    each other (nor behind the ``used_at`` update, a no-key update); only the recall purge's FOR
    UPDATE (and DELETE) conflicts with it. One statement, rows in ascending id order. A row the
    purge deleted meanwhile is simply missing from the answer. SQLite (the embedded default)
    serialises writers with IMMEDIATE transactions, so a plain read is enough there.
    """
    ids = _uuids(media_ids)
    if not ids:
        return {}
    if connection.vendor != "postgresql":
        qs = Attachment.objects.filter(pk__in=ids)
        if owner_id is not None:
            qs = qs.filter(owner_id=owner_id)
        return {str(a.pk): a for a in qs}
    if owner_id is None:
        rows = Attachment.objects.raw(_LOCK_SHARED, [ids])
    else:
        rows = Attachment.objects.raw(_LOCK_SHARED_OWNED, [ids, owner_id])
    return {str(a.pk): a for a in rows}


def attachment_referenced(*, media_id: str) -> bool:
    """Whether a message that is not recalled carries this ``media_id`` (a forwarded copy, the
    same upload sent twice). Served by the partial index of migration 0004 on PostgreSQL."""
    return _carriers(media_id=media_id).exists()


def _carriers(*, media_id: str) -> QuerySet[Message]:
    # Written as ``content ->> 'media_id'`` (not the ORM's jsonb equality) to match the index.
    return Message.objects.alias(media_ref=KT("content__media_id")).filter(
        media_ref=media_id, recalled_at__isnull=True
    )


def attachment_purge_recalled(*, media_id: Any) -> bool:
    """Delete a recalled message's upload (row now, original and thumbnail files after commit)
    unless a message that is not recalled still carries it: copies already forwarded keep their
    media, as in WeChat, and the recall of the last of them deletes it.

    Called after the recall commits (task ``messaging.purge_recalled_media``); idempotent (a
    second run finds no row). Only uploads that were sent (``used_at`` set) are considered, so an
    upload waiting to be sent is never taken. Returns whether it deleted.
    """
    ids = _uuids([media_id])
    if not ids:
        return False
    with transaction.atomic():
        # FOR UPDATE waits for every send or forward holding the row (FOR KEY SHARE); the count
        # below then runs on a fresh snapshot (READ COMMITTED) that includes their messages.
        att = (
            Attachment.objects.select_for_update(of=("self",))
            .filter(pk=ids[0], used_at__isnull=False)
            .first()
        )
        if att is None or attachment_referenced(media_id=ids[0]):
            return False
        Attachment.objects.filter(pk=att.pk).delete()
        transaction.on_commit(lambda: _delete_files(att))
    return True
