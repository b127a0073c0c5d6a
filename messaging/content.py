"""What a client may send: kinds, their fields and limits. Pure checks, no database.

Every check raises :class:`ValidationFailed` (400) naming the field, before anything is written.
"""

from __future__ import annotations

import math
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

from superapp.core.errors import ValidationFailed

# Kinds a user may send (system messages are written by the server only).
SENDABLE_KINDS = ("text", "image", "video", "voice", "file", "sticker", "location", "contact")
# Kinds only payments writes (through messaging.services.payment_message_post), in the same
# transaction as the money: a client can neither send, recall nor forward them.
PAYMENT_KINDS = ("transfer", "red_packet")
MEDIA_KINDS = ("image", "video", "voice", "file")
CLIENT_MSG_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
MAX_MENTIONS = 50


def _bad(field_name: str, message: str, code: str = "invalid") -> ValidationFailed:
    return ValidationFailed(message, code=code, fields={field_name: [message]})


@dataclass
class Draft:
    """A validated message before it is stored. ``media_id`` is resolved by the service."""

    kind: str
    text: str = ""
    content: dict[str, Any] = field(default_factory=dict)
    media_id: uuid.UUID | None = None
    contact_user_id: int | None = None
    reply_to_seq: int | None = None
    mentions: list[int] = field(default_factory=list)
    mention_all: bool = False


def check_client_msg_id(value: Any) -> str:
    if not isinstance(value, str) or not CLIENT_MSG_ID_RE.fullmatch(value):  # ("$" let "x\n" in)
        raise _bad("client_msg_id", _("client_msg_id must be 1-64 letters, digits or . _ : -"))
    return value


def positive_int(value: Any, field_name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value > 2**62:
        raise _bad(field_name, _("A positive integer is required."))
    return value


def _clean_text(value: Any, field_name: str, *, max_chars: int, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _bad(field_name, _("Text is required."))
    _check_unicode(value, field_name)
    # NUL cannot be stored in PostgreSQL text; other control characters are noise.
    value = "".join(ch for ch in value if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    if required and not value.strip():
        raise _bad(field_name, _("The message is empty."))
    if len(value) > max_chars:
        raise _bad(
            field_name,
            _("At most %(max)d characters.") % {"max": max_chars},
            code="text_too_long",
        )
    return value


def _number(value: Any, field_name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(field_name, _("A number is required."))
    try:
        finite = math.isfinite(value)  # an int too large for a float (10**400) overflows here
    except OverflowError:
        finite = False
    if not finite:
        raise _bad(field_name, _("A number is required."))
    if not low <= value <= high:
        raise _bad(field_name, _("Out of range."))
    return round(float(value), 6)


def _short(value: Any, field_name: str, max_chars: int, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > max_chars:
        raise _bad(field_name, _("A text of at most %(max)d characters is required.") % {"max": max_chars})
    _check_unicode(value, field_name)
    return value


def _check_unicode(value: str, field_name: str) -> None:
    """A lone surrogate (valid JSON: a bare \\ud800 escape) is no character: it cannot be stored."""
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise _bad(field_name, _("The text is not valid Unicode."))


def check_draft(
    *,
    kind: Any,
    text: Any = "",
    content: Any = None,
    reply_to_seq: Any = None,
    mentions: Any = None,
    mention_all: Any = False,
) -> Draft:
    """Validate a message as sent by a client; returns a :class:`Draft`."""
    if kind in PAYMENT_KINDS:
        raise _bad(
            "kind", _("Transfers and red packets are sent from the wallet, not as messages."),
            code="kind_not_sendable",
        )  # fmt: skip
    if kind not in SENDABLE_KINDS:
        raise _bad("kind", _("Unknown message kind."), code="unknown_kind")
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise _bad("content", _("content must be an object."))
    draft = Draft(kind=kind)
    draft.reply_to_seq = positive_int(reply_to_seq, "reply_to_seq", allow_none=True)
    if mentions is None:
        mentions = []
    if (
        not isinstance(mentions, list)
        or len(mentions) > MAX_MENTIONS
        or any(isinstance(m, bool) or not isinstance(m, int) or m <= 0 for m in mentions)
    ):
        raise _bad("mentions", _("A list of at most %(max)d user ids.") % {"max": MAX_MENTIONS})
    draft.mentions = sorted(set(mentions))
    if not isinstance(mention_all, bool):
        raise _bad("mention_all", _("true or false."))
    draft.mention_all = mention_all

    if kind == "text":
        draft.text = _clean_text(text, "text", max_chars=settings.MESSAGING_TEXT_MAX, required=True)
        if content:
            raise _bad("content", _("A text message has no content fields."))
        return draft
    if text not in (None, ""):
        raise _bad("text", _("Only text messages carry text."))
    if kind in MEDIA_KINDS:
        try:
            draft.media_id = uuid.UUID(str(content.get("media_id")))
        except ValueError:
            raise _bad("content.media_id", _("Upload the file first, then send its media_id.")) from None
        if set(content) - {"media_id"}:
            raise _bad("content", _("Only media_id is accepted."))
    elif kind == "sticker":
        draft.content = {
            "sticker_id": _short(content.get("sticker_id"), "content.sticker_id", 64, required=True),
            "pack_id": _short(content.get("pack_id"), "content.pack_id", 64),
        }
    elif kind == "location":
        draft.content = {
            "latitude": _number(content.get("latitude"), "content.latitude", -90, 90),
            "longitude": _number(content.get("longitude"), "content.longitude", -180, 180),
            "name": _short(content.get("name"), "content.name", 100),
            "address": _short(content.get("address"), "content.address", 200),
        }
    elif kind == "contact":
        draft.contact_user_id = positive_int(content.get("user_id"), "content.user_id")
    allowed = {"sticker": {"sticker_id", "pack_id"}, "location": {"latitude", "longitude", "name", "address"},
               "contact": {"user_id"}}.get(kind)  # fmt: skip
    if allowed is not None and set(content) - allowed:
        raise _bad("content", _("Unknown content fields."))
    return draft


def payment_client_msg_id(kind: str, object_id: int) -> str:
    """The ``client_msg_id`` of the chat message of one payment (``transfer/12``).

    Unique per sender by the database like any client_msg_id, so a payment has at most one
    message; a client cannot take it (``/`` is not allowed in a client's ids).
    """
    return f"{kind}/{object_id}"


# --- full-text search document -------------------------------------------------------------------

# CJK scripts have no spaces between words: index each character as a token, and search a run of
# them as a phrase (characters in a row), which finds any substring of a Chinese sentence.
_CJK = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff])")


def search_document(text: str) -> str:
    """The text as the full-text index sees it (CJK characters split apart)."""
    return _CJK.sub(r" \1 ", text)
