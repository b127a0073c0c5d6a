"""Image intake for every upload (avatars, chat and Moments media): validate, normalise, thumbnail.

What goes in is whatever a client uploads; what comes out is a clean image: decoded fully (so a
truncated or fake file fails here, not later), decompression bombs refused, EXIF orientation
applied to the pixels and every metadata block (GPS included) dropped by re-encoding.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.utils.translation import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

from superapp.core.errors import ValidationFailed

# MPO is a JPEG with extra frames (stereo/depth): what many phone cameras write. Its first frame is used.
ALLOWED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "GIF"}


@dataclass(frozen=True)
class ProcessedImage:
    full: ContentFile
    thumb: ContentFile
    width: int
    height: int


def _invalid(message: str, field: str) -> ValidationFailed:
    return ValidationFailed(message, code="invalid_image", fields={field: [message]})


def process_image(
    upload, *, max_bytes: int, max_pixels: int, full_size: int, thumb_size: int, field: str = "image"
) -> ProcessedImage:
    """Validate and re-encode an uploaded image; raises ValidationFailed (400) for bad input."""
    if upload.size is not None and upload.size > max_bytes:
        raise _invalid(_("The image is larger than %(mb)d MB.") % {"mb": max_bytes // (1024 * 1024)}, field)
    data = upload.read()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                if probe.format not in ALLOWED_FORMATS:
                    raise _invalid(_("Only JPEG, PNG, WebP and GIF images are accepted."), field)
                width, height = probe.size
                if width * height > max_pixels:
                    raise _invalid(_("The image has too many pixels."), field)
                probe.verify()
            image = Image.open(io.BytesIO(data))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _invalid(_("The image has too many pixels."), field) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _invalid(_("The file is not a valid image."), field) from None

    image = ImageOps.exif_transpose(image)  # turn the pixels, then forget the EXIF block
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    image = image.convert("RGBA" if has_alpha else "RGB")
    fmt, ext = ("PNG", "png") if has_alpha else ("JPEG", "jpg")

    def encode(img: Image.Image, size: int, name: str) -> ContentFile:
        copy = img.copy()
        copy.thumbnail((size, size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        # No exif= / pnginfo= arguments: nothing of the original metadata is written.
        copy.save(buffer, format=fmt, **({"quality": 88, "optimize": True} if fmt == "JPEG" else {}))
        return ContentFile(buffer.getvalue(), name=f"{name}.{ext}")

    return ProcessedImage(
        full=encode(image, full_size, "full"),
        thumb=encode(image, thumb_size, "thumb"),
        width=image.width,
        height=image.height,
    )
