"""Pluggable senders of verification codes (``VERIFICATION_SENDER`` setting).

``ConsoleSender`` (the default) prints codes, for development and the demo. ``EmailSender`` sends
emails through Django's email backend (``EMAIL_BACKEND``/SMTP) and prints SMS codes: an SMS
gateway adapter is a class with the same ``send`` method.
"""

from __future__ import annotations

import logging
import sys

from django.conf import settings
from django.core.mail import send_mail
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)


class ConsoleSender:
    def send(self, *, channel: str, destination: str, code: str) -> None:
        print(
            f"[superapp] verification code for {destination} ({channel}): {code}", file=sys.stdout, flush=True
        )


class EmailSender(ConsoleSender):
    def send(self, *, channel: str, destination: str, code: str) -> None:
        if channel != "email":
            super().send(channel=channel, destination=destination, code=code)
            return
        send_mail(
            subject=_("Your superapp code"),
            message=_("Your verification code is %(code)s. It expires in 10 minutes.") % {"code": code},
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[destination],
        )


def get_sender():
    return import_string(settings.VERIFICATION_SENDER)()
