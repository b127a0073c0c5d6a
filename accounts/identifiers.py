"""Normalising what people type: handles, phones (E.164) and emails."""

from __future__ import annotations

import re

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext as _

from superapp.core.errors import ValidationFailed

from .models import HANDLE_REGEX

_handle_re = re.compile(HANDLE_REGEX)


def normalize_phone(raw: str, *, field: str = "phone") -> str:
    """``+86 138-0013-8000`` -> ``+8613800138000``; raises ValidationFailed if not a real number."""
    try:
        number = phonenumbers.parse(raw.strip(), None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise ValidationFailed(
            _("Enter a phone number in international format, like +8613800138000."),
            fields={field: [_("Not a valid international phone number.")]},
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str, *, field: str = "email") -> str:
    value = raw.strip().lower()
    try:
        validate_email(value)
    except ValidationError:
        raise ValidationFailed(
            _("Enter a valid email address."), fields={field: [_("Not a valid email.")]}
        ) from None
    return value


def normalize_handle(raw: str, *, field: str = "handle") -> str:
    value = raw.strip().lower()
    if not _handle_re.match(value):
        raise ValidationFailed(
            _("A handle is 3-20 characters: a letter, then letters, digits or underscores."),
            fields={field: [_("Not a valid handle.")]},
        )
    return value


def classify_login(raw: str) -> tuple[str, str] | None:
    """What a login string names: ("email"|"phone"|"handle", normalised value), or None."""
    value = (raw or "").strip()
    if not value:
        return None
    try:
        if "@" in value:
            return "email", normalize_email(value)
        if value.startswith("+") or value[:1].isdigit():
            return "phone", normalize_phone(value)
        return "handle", normalize_handle(value)
    except ValidationFailed:
        return None
