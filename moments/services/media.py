"""Media intake: images through ``superapp.core.images``, videos checked (never transcoded)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.core.files.base import File
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from superapp.core.errors import ValidationFailed
from superapp.core.images import process_image

from ..models import Media

# The container is recognised by its first bytes; what the client claims is not trusted.
# ISO base media (MP4, MOV): a box size, then "ftyp" and a brand. WebM/Matroska: the EBML magic.
QUICKTIME_BRANDS = {b"qt  "}
EBML_MAGIC = b"\x1a\x45\xdf\xa3"


def _sniff_video(head: bytes) -> tuple[str, str] | None:
    """``(content_type, extension)`` of a supported video container, or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        if head[8:12] in QUICKTIME_BRANDS:
            return "video/quicktime", "mov"
        return "video/mp4", "mp4"
    if head.startswith(EBML_MAGIC) and b"webm" in head[:64]:
        return "video/webm", "webm"
    return None


def _image(upload, field: str):
    return process_image(
        upload,
        max_bytes=settings.MOMENTS_IMAGE_MAX_BYTES,
        max_pixels=settings.MOMENTS_IMAGE_MAX_PIXELS,
        full_size=settings.MOMENTS_IMAGE_SIZES[0],
        thumb_size=settings.MOMENTS_IMAGE_SIZES[1],
        field=field,
    )


def media_upload(*, owner, kind: str, upload, cover=None) -> Media:
    """Store one image or video for a post the owner is about to publish.

    Images are decoded, re-encoded without metadata and thumbnailed (``process_image``). A video
    must be MP4, MOV or WebM (recognised by its bytes) and at most ``MOMENTS_VIDEO_MAX_BYTES``;
    it is stored as uploaded (no transcoding, no server-made poster). ``cover``, optional, is an
    image shown before the video plays, processed like any image.
    """
    stem = uuid.uuid4().hex
    if kind == Media.Kind.IMAGE:
        if cover is not None:
            raise ValidationFailed(fields={"cover": [_("Only a video has a cover.")]})
        processed = _image(upload, "file")
        item = Media(
            owner=owner,
            kind=kind,
            width=processed.width,
            height=processed.height,
            size=processed.full.size,
            content_type="image/png" if processed.full.name.endswith(".png") else "image/jpeg",
        )
        item.file.save(f"{stem}.{processed.full.name}", processed.full, save=False)
        item.thumb.save(f"{stem}.{processed.thumb.name}", processed.thumb, save=False)
    elif kind == Media.Kind.VIDEO:
        if upload.size is not None and upload.size > settings.MOMENTS_VIDEO_MAX_BYTES:
            message = _("The video is larger than %(mb)d MB.") % {
                "mb": settings.MOMENTS_VIDEO_MAX_BYTES // 2**20
            }
            raise ValidationFailed(message, code="invalid_video", fields={"file": [message]})
        upload.seek(0)
        sniffed = _sniff_video(upload.read(64))
        upload.seek(0)
        if sniffed is None:
            message = _("Only MP4, MOV and WebM videos are accepted.")
            raise ValidationFailed(message, code="invalid_video", fields={"file": [message]})
        content_type, ext = sniffed
        item = Media(owner=owner, kind=kind, size=upload.size or 0, content_type=content_type)
        if cover is not None:
            processed = _image(cover, "cover")
            item.width, item.height = processed.width, processed.height
            item.thumb.save(
                f"{stem}.cover.{processed.thumb.name.rsplit('.', 1)[-1]}", processed.thumb, save=False
            )
        item.file.save(f"{stem}.{ext}", File(upload), save=False)
    else:
        raise ValidationFailed(fields={"kind": [_("image or video")]})
    try:
        with transaction.atomic():
            item.save()
    except Exception:
        delete_files([item.file.name, item.thumb.name])
        raise
    return item


def delete_files(names) -> None:
    from django.core.files.storage import default_storage

    for name in names:
        if name:
            default_storage.delete(name)


def media_purge_orphans(*, older_than: timedelta | None = None) -> int:
    """Delete uploads never attached to a post (and their files); returns how many."""
    older_than = older_than or timedelta(hours=settings.MOMENTS_ORPHAN_MEDIA_HOURS)
    cutoff = timezone.now() - older_than
    with transaction.atomic():
        orphans = list(
            Media.objects.select_for_update(skip_locked=True)
            .filter(post__isnull=True, created_at__lt=cutoff)
            .values_list("pk", "file", "thumb")
        )
        Media.objects.filter(pk__in=[pk for pk, _f, _t in orphans]).delete()
        names = [name for _pk, *files in orphans for name in files]
        transaction.on_commit(lambda: delete_files(names))
    return len(orphans)
