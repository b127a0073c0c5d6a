"""The sandbox provider: cards link and top-ups succeed at once (the demo and most tests).

Real-name verification: the user types their legal name and a mainland China resident ID
number; the number's format is checked (18 characters, a real birth date, the ISO 7064
MOD 11-2 check character) and the identity is verified at once. No registry is asked.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import date

from django.utils.translation import gettext as _

from superapp.core.errors import ValidationFailed

from . import (
    CardInfo,
    CardSetup,
    IdentityResult,
    IdentityStart,
    IdentityStatus,
    PayoutResult,
    ProviderError,
    TopUpResult,
)

# GB 11643-1999: weights 2^(17-i) mod 11 of the first 17 digits; the check character is
# (12 - sum mod 11) mod 11, "X" standing for 10 (ISO 7064 MOD 11-2).
_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]
_CHECK = "10X98765432"
_RESIDENT_ID = re.compile(r"[1-9][0-9]{16}[0-9X]")
# The separators names use besides spaces ("·" in 阿依古丽·买买提, O'Brien, Jean-Luc, St. John).
_NAME_SEPARATORS = frozenset(" '.·-")
# What keyboards type for the middle dot of minority names: katakana "・", bullet "•", and the like.
_MIDDLE_DOTS = str.maketrans(dict.fromkeys("\u30fb\uff65\u2022\u2027\u2219\u22c5\u0387\u16eb", "·"))


def legal_name_normalize(name: str) -> str:
    """A name as stored and compared: NFC (a keyboard sending "e" + U+0301 and one sending "é"
    give the same name), one space between words, one middle dot for its look-alikes."""
    return " ".join(unicodedata.normalize("NFC", name).translate(_MIDDLE_DOTS).split())


def legal_name_valid(name: str) -> bool:
    """Letters of any script with their combining marks (Thai and Devanagari vowel signs,
    accents left apart by NFC), and the separators between words; it starts with a letter."""
    if not name or not unicodedata.category(name[0]).startswith("L"):
        return False
    return all(unicodedata.category(c)[0] in "LM" or c in _NAME_SEPARATORS for c in name)


def cn_resident_id_valid(number: str) -> bool:
    """Whether ``number`` (upper-case) is a well-formed mainland resident ID: 18 characters, a
    real birth date not in the future, and a correct check character. Says nothing about
    whether anyone holds it."""
    if not _RESIDENT_ID.fullmatch(number):
        return False
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if born > date.today() or born.year < 1900:
        return False
    total = sum(int(digit) * weight for digit, weight in zip(number[:17], _WEIGHTS, strict=True))
    return _CHECK[total % 11] == number[17]


def _identity_input(legal_name: str, id_number: str) -> IdentityResult:
    """The typed name and number, normalized, or ValidationFailed naming each bad field."""
    name = legal_name_normalize(str(legal_name or ""))
    number = str(id_number or "").strip().upper()
    fields: dict[str, list[str]] = {}
    if len(name) > 100 or not legal_name_valid(name):
        fields["legal_name"] = [_("Your legal name, as on your ID card.")]
    if not cn_resident_id_valid(number):
        fields["id_number"] = [_("Not a valid resident ID number (18 characters).")]
    if fields:
        raise ValidationFailed(fields=fields, code="invalid_identity")
    return IdentityResult(legal_name=name, id_type="cn_resident_id", id_number=number)


class SandboxProvider:
    name = "sandbox"

    def customer_create(self, *, user_id: int) -> str:
        return f"sandbox_cus_{user_id}"

    def card_setup(self, *, customer_id: str) -> CardSetup:
        ref = f"sandbox_seti_{secrets.token_hex(8)}"
        return CardSetup(setup_ref=ref, client_secret=f"{ref}_secret")

    def card_attach(self, *, customer_id: str, payment_method_id: str) -> CardInfo:
        return CardInfo(
            provider_ref=payment_method_id, brand="visa", last4="4242", exp_month=12, exp_year=2030
        )

    def card_detach(self, *, payment_method_id: str) -> None:
        return None

    def start_top_up(
        self, *, top_up_id: int, amount: int, currency: str, customer_id: str, payment_method_id: str | None
    ) -> TopUpResult:
        return TopUpResult(provider_ref=f"sandbox_{top_up_id}", succeeded=True)

    def payout_create(
        self, *, withdrawal_id: int, amount: int, currency: str, destination: str
    ) -> PayoutResult:
        return PayoutResult(provider_ref=f"sandbox_po_{withdrawal_id}", paid=True)

    def identity_start(
        self, *, verification_id: int, user_id: int, legal_name: str, id_number: str
    ) -> IdentityStart:
        """Check the typed identity and verify it at once.

        Raises:
            ValidationFailed ``invalid_identity`` (400) naming ``legal_name`` / ``id_number``.
        """
        result = _identity_input(legal_name, id_number)
        return IdentityStart(provider_ref=f"sandbox_vs_{verification_id}", result=result)

    def identity_result(self, *, provider_ref: str) -> IdentityResult:
        """The sandbox keeps no sessions: it verifies (or refuses) while starting, and never says
        "verified" later, so there is no result to read back."""
        raise ProviderError(
            _("The verification service is not available."), code="identity_result_unavailable"
        )

    def identity_cancel(self, *, provider_ref: str) -> None:
        return None

    def identity_status(self, *, provider_ref: str) -> IdentityStatus:
        """Nothing ever waits for the user here (it ends while starting): an attempt still
        pending (its process stopped mid-start) has nothing to go back to, so ``canceled``."""
        return IdentityStatus(status="canceled")

    def identity_redact(self, *, provider_ref: str) -> None:
        """Nothing to delete: the sandbox keeps no copy of what the user typed."""
        return None
