"""Avatar intake (superapp.core.images + /api/v1/me/avatar): validate, orient, strip metadata, thumbnail.

Every image is generated in memory with Pillow; nothing is read from disk fixtures.
"""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import ExifTags, Image

from accounts import events as account_events
from superapp.core.errors import ValidationFailed
from superapp.core.events import events_since
from superapp.core.images import process_image
from tests.conftest import befriend
from tests.core.test_errors import assert_error

pytestmark = pytest.mark.django_db

BLUE = (0, 0, 255)
RED = (255, 0, 0)


def jpeg_with_exif(width: int = 800, height: int = 400) -> bytes:
    """Left half blue, right half red; EXIF says "rotate 90° clockwise to display" and has GPS."""
    image = Image.new("RGB", (width, height), RED)
    image.paste(BLUE, (0, 0, width // 2, height))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "SpyCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (39.0, 54.0, 27.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (116.0, 23.0, 29.0)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=95)
    data = buffer.getvalue()
    # The fixture really carries what we mean to strip.
    with Image.open(io.BytesIO(data)) as check:
        assert check.getexif()[ExifTags.Base.Orientation] == 6
        assert check.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    return data


def png_with_alpha(width: int = 300, height: int = 200) -> bytes:
    image = Image.new("RGBA", (width, height), (255, 0, 0, 0))
    image.paste((0, 255, 0, 255), (0, 0, width // 2, height))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def plain(fmt: str, size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def upload(data: bytes, name: str = "avatar.jpg", content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def put_avatar(client, data: bytes, name: str = "avatar.jpg", content_type: str = "image/jpeg"):
    return client.put("/api/v1/me/avatar", {"avatar": upload(data, name, content_type)}, format="multipart")


def stored(name: str) -> tuple[bytes, Image.Image]:
    with default_storage.open(name) as handle:
        data = handle.read()
    image = Image.open(io.BytesIO(data))
    image.load()
    return data, image


def assert_no_metadata(data: bytes, image: Image.Image) -> None:
    assert len(image.getexif()) == 0
    assert "exif" not in image.info
    assert b"Exif\x00\x00" not in data and b"eXIf" not in data
    assert b"SpyCam" not in data


# --- process_image (the shared intake) -----------------------------------------------------------


def process(data: bytes, **overrides):
    options = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 4_000_000, "full_size": 640, "thumb_size": 132}
    return process_image(upload(data), **{**options, **overrides, "field": "avatar"})


def test_exif_orientation_applied_and_metadata_dropped():
    result = process(jpeg_with_exif(800, 400))
    assert (result.width, result.height) == (400, 800)  # turned upright
    for content, box in ((result.full, 640), (result.thumb, 132)):
        data = content.read()
        image = Image.open(io.BytesIO(data))
        image.load()
        assert image.format == "JPEG"
        assert max(image.size) == box and image.width < image.height
        assert_no_metadata(data, image)
        # Rotated clockwise: the left (blue) half of the sensor image is now on top.
        top = image.getpixel((image.width // 2, image.height // 8))
        bottom = image.getpixel((image.width // 2, image.height * 7 // 8))
        assert top[2] > 200 and top[0] < 60, top
        assert bottom[0] > 200 and bottom[2] < 60, bottom


def test_small_images_are_not_enlarged():
    result = process(plain("PNG", (100, 50)))
    assert Image.open(result.full).size == (100, 50)
    assert Image.open(result.thumb).size == (100, 50)


def test_png_alpha_is_kept():
    result = process(png_with_alpha(300, 200))
    assert result.full.name.endswith(".png") and result.thumb.name.endswith(".png")
    image = Image.open(result.full)
    assert image.format == "PNG" and image.mode == "RGBA"
    assert image.getpixel((10, 10))[3] == 255
    assert image.getpixel((290, 10))[3] == 0
    assert max(Image.open(result.thumb).size) == 132


def test_phone_camera_mpo_jpeg_is_accepted():
    """Many phones write MPO (a JPEG plus depth/stereo frames); Pillow reports it as "MPO"."""
    first = Image.new("RGB", (80, 40), RED)
    first.paste(BLUE, (0, 0, 40, 40))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    buffer = io.BytesIO()
    first.save(
        buffer, format="MPO", save_all=True, append_images=[Image.new("RGB", (80, 40), "white")], exif=exif
    )
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    result = process(buffer.getvalue())
    image = Image.open(result.full)
    assert image.format == "JPEG" and image.size == (40, 80)
    assert image.getpixel((20, 5))[2] > 200  # the first frame, turned upright (blue on top)
    assert len(image.getexif()) == 0


@pytest.mark.parametrize("fmt", ["WEBP", "GIF"])
def test_other_accepted_formats(fmt):
    result = process(plain(fmt))
    assert Image.open(result.full).format == "JPEG"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"this is a text file, renamed .jpg\n" * 20, "not a valid image"),
        (plain("JPEG", (300, 300))[:400], "not a valid image"),  # truncated
        (plain("PNG", (300, 300))[:-30], "not a valid image"),  # truncated, CRC missing
        (plain("BMP"), "Only JPEG"),
        (plain("TIFF"), "Only JPEG"),
        (b"", "not a valid image"),
        (png_header_claiming(100_000, 100_000), "too many pixels"),  # above Pillow's own bomb limit
        (png_header_claiming(5_000, 5_000), "too many pixels"),  # above our limit only
    ],
    ids=["text", "truncated-jpeg", "truncated-png", "bmp", "tiff", "empty", "bomb-huge", "bomb"],
)
def test_bad_images_are_rejected(data, message):
    with pytest.raises(ValidationFailed) as caught:
        process(data)
    assert caught.value.code == "invalid_image"
    assert caught.value.status_code == 400
    assert message in caught.value.fields["avatar"][0]


def test_pixel_limit_applies_to_real_images():
    with pytest.raises(ValidationFailed, match="too many pixels"):
        process(plain("PNG", (120, 100)), max_pixels=10_000)
    process(plain("PNG", (100, 100)), max_pixels=10_000)


def test_byte_limit():
    with pytest.raises(ValidationFailed) as caught:
        process(plain("PNG", (200, 200)), max_bytes=100)
    assert "larger than" in caught.value.fields["avatar"][0]


# --- PUT/DELETE /api/v1/me/avatar -----------------------------------------------------------------


def test_upload_avatar(client_for, alice, bob, django_capture_on_commit_callbacks):
    befriend(alice, bob)
    with django_capture_on_commit_callbacks(execute=True):
        response = put_avatar(client_for(alice), jpeg_with_exif(800, 400))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["avatar_url"].startswith("/media/avatars/") and body["avatar_url"].endswith(".jpg")
    assert body["avatar_thumb_url"].startswith("/media/avatars/")
    alice.refresh_from_db()

    data, full = stored(alice.avatar.name)
    assert full.format == "JPEG" and full.size == (320, 640)
    assert_no_metadata(data, full)
    data, thumb = stored(alice.avatar_thumb.name)
    assert thumb.size == (66, 132)
    assert_no_metadata(data, thumb)

    (event,) = events_since(user_id=bob.pk, since=0)["events"]
    assert event["type"] == account_events.PROFILE_UPDATED
    assert event["data"]["user"]["avatar_url"] == body["avatar_url"]
    assert event["data"]["user"]["avatar_thumb_url"] == body["avatar_thumb_url"]
    assert [e["type"] for e in events_since(user_id=alice.pk, since=0)["events"]] == [
        account_events.ME_UPDATED
    ]
    # The profile that others see carries the avatar too.
    assert client_for(bob).get(f"/api/v1/users/{alice.pk}").json()["user"]["avatar_url"] == body["avatar_url"]


def test_upload_avatar_with_post_and_png(client_for, alice):
    response = client_for(alice).post(
        "/api/v1/me/avatar", {"avatar": upload(png_with_alpha(), "me.png", "image/png")}, format="multipart"
    )
    assert response.status_code == 200, response.json()
    alice.refresh_from_db()
    _data, image = stored(alice.avatar.name)
    assert image.format == "PNG" and image.mode == "RGBA"


def test_replacing_and_removing_avatar_deletes_old_files(
    client_for, alice, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    with django_capture_on_commit_callbacks(execute=True):
        put_avatar(client, plain("JPEG"))
    alice.refresh_from_db()
    first = (alice.avatar.name, alice.avatar_thumb.name)
    assert all(default_storage.exists(name) for name in first)

    with django_capture_on_commit_callbacks(execute=True):
        put_avatar(client, plain("JPEG"))
    alice.refresh_from_db()
    second = (alice.avatar.name, alice.avatar_thumb.name)
    assert not set(first) & set(second)
    assert not any(default_storage.exists(name) for name in first)
    assert all(default_storage.exists(name) for name in second)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete("/api/v1/me/avatar")
    assert response.status_code == 200
    assert response.json()["avatar_url"] is None and response.json()["avatar_thumb_url"] is None
    assert not any(default_storage.exists(name) for name in second)
    # Removing again is a no-op.
    assert client.delete("/api/v1/me/avatar").status_code == 200


@pytest.mark.parametrize(
    "data",
    [
        b"GIF89a? no, just text renamed to .jpg" * 10,
        plain("JPEG", (300, 300))[:500],
        png_header_claiming(100_000, 100_000),
        plain("BMP"),
    ],
    ids=["text", "truncated", "bomb", "bmp"],
)
def test_upload_bad_avatar_is_400(client_for, alice, data):
    error = assert_error(put_avatar(client_for(alice), data), 400, "invalid_image")
    assert set(error["fields"]) == {"avatar"}
    alice.refresh_from_db()
    assert not alice.avatar
    assert events_since(user_id=alice.pk, since=0)["events"] == []


def test_upload_above_pixel_limit_is_400(client_for, alice, settings):
    settings.AVATAR_MAX_PIXELS = 10_000
    response = put_avatar(client_for(alice), plain("JPEG", (200, 100)), "big.jpg")
    error = assert_error(response, 400, "invalid_image")
    assert "too many pixels" in error["fields"]["avatar"][0]


def test_upload_above_byte_limit_is_400(client_for, alice, settings):
    settings.AVATAR_MAX_BYTES = 500
    error = assert_error(put_avatar(client_for(alice), jpeg_with_exif()), 400, "invalid_image")
    assert "avatar" in error["fields"]


def test_upload_without_a_file_is_400(client_for, alice):
    client = client_for(alice)
    assert (
        "avatar"
        in assert_error(client.put("/api/v1/me/avatar", {}, format="multipart"), 400, "invalid")["fields"]
    )
    response = client.put("/api/v1/me/avatar", {"avatar": "not a file"}, format="multipart")
    assert "avatar" in assert_error(response, 400)["fields"]
    response = client.put("/api/v1/me/avatar", {"avatar": "x"}, format="json")
    assert_error(response, 415, "unsupported_media_type")


def test_avatar_requires_authentication(api):
    assert_error(api.put("/api/v1/me/avatar", {"avatar": upload(plain("JPEG"))}, format="multipart"), 401)
