"""Push notifications for members who are offline: when, to whom, and what they say.

1. After a send commits, :func:`schedule_on_commit` asks presence which recipients have no open
   socket (one pipelined Redis round trip) and, for each of them, claims a per-user window
   (``SET NX PX``) of ``MESSAGING_PUSH_WINDOW`` seconds. Recipients whose window was free are
   handed to one Celery task, ``messaging.push_flush``, due when the window ends; the others
   already have a task coming, which will include this message too.
2. The task (:func:`flush_user`) frees the window first (so a message committed after it looks
   starts a new one), skips users who came back online, and otherwise pushes one notification
   summing up the unread messages newer than the user's bookmark
   (``UserSettings.last_pushed_message_id``): muted conversations only when the user was
   mentioned, recalled and system messages never. Without "show preview" it says only how many
   messages there are: no text, no sender, no conversation name.
3. The bookmark moves forward after the push: a task run twice pushes at most twice, and both
   copies carry the same ``collapse_key``, so a device shows one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.db.models.functions import Greatest
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from . import presence
from .models import Member, Message, UserSettings

logger = logging.getLogger(__name__)

KIND_LABELS = {
    "image": "[Image]",
    "video": "[Video]",
    "voice": "[Voice]",
    "file": "[File]",
    "sticker": "[Sticker]",
    "location": "[Location]",
    "contact": "[Contact card]",
    "transfer": "[Transfer]",
    "red_packet": "[Red Packet]",
}
SCAN_LIMIT = 200


def _window_key(user_id: int) -> str:
    return f"push-window:{user_id}"


def schedule_on_commit(*, sender_id: int, recipient_ids: list[int]) -> None:
    """After commit: start a push window for each offline recipient that has none running."""
    if not recipient_ids or not settings.MESSAGING_PUSH_ENABLED:
        return
    ids = sorted(set(recipient_ids))
    transaction.on_commit(lambda: _schedule(ids))


def _schedule(user_ids: list[int]) -> None:
    try:
        online = presence.online_ids(user_ids)
        offline = [uid for uid in user_ids if uid not in online]
        if not offline:
            return
        window = float(settings.MESSAGING_PUSH_WINDOW)
        claimed = presence.claim_windows([_window_key(u) for u in offline], window)
        due = [uid for uid, ok in zip(offline, claimed, strict=True) if ok]
        if due:
            from .tasks import push_flush

            push_flush.apply_async(kwargs={"user_ids": due}, countdown=window)
    except Exception:  # a push is a courtesy: never fail or slow down a committed send
        logger.warning("scheduling push notifications failed", exc_info=True)


@dataclass(frozen=True)
class Pending:
    message_id: int
    conversation_id: int
    conversation_name: str
    is_group: bool
    sender_name: str
    kind: str
    text: str


def pending_for(user_id: int) -> tuple[list[Pending], int]:
    """Unread messages newer than the user's push bookmark, newest first, and the newest id."""
    bookmark = (
        UserSettings.objects.filter(user_id=user_id).values_list("last_pushed_message_id", flat=True).first()
        or 0
    )
    rows = (
        Message.objects.filter(
            conversation__members__user_id=user_id,
            conversation__members__left_at__isnull=True,
            seq__gt=F("conversation__members__last_read_seq"),
            id__gt=bookmark,
            recalled_at__isnull=True,
            sender__isnull=False,
        )
        .exclude(sender_id=user_id)
        .annotate(_muted=F("conversation__members__muted"))
        .select_related("sender", "conversation")
        .order_by("-id")[:SCAN_LIMIT]
    )
    out: list[Pending] = []
    newest = bookmark
    for m in rows:
        newest = max(newest, m.id)
        if m._muted and not (m.mention_all or user_id in (m.mentions or [])):
            continue
        conv = m.conversation
        out.append(
            Pending(
                message_id=m.id,
                conversation_id=conv.pk,
                conversation_name=conv.name,
                is_group=conv.kind == "group",
                sender_name=m.sender.display_name or m.sender.handle,
                kind=m.kind,
                text=m.text,
            )
        )
    return out, newest


def badge_for(user_id: int) -> int:
    """Unread messages over the user's unmuted conversations (the app icon's number)."""
    total = (
        Member.objects.filter(user_id=user_id, left_at__isnull=True, muted=False)
        .aggregate(n=Sum(F("conversation__last_seq") - F("last_read_seq")))
        .get("n")
    )
    return max(int(total or 0), 0)


def build(pending: list[Pending], *, show_preview: bool, badge: int) -> dict[str, Any]:
    """The notification's fields (``superapp.core.push.Notification`` keyword arguments)."""
    count = len(pending)
    conversations = {p.conversation_id for p in pending}
    data = {"type": "messages", "count": str(count)}
    if len(conversations) == 1:
        data["conversation_id"] = str(next(iter(conversations)))
    app = settings.MESSAGING_PUSH_APP_NAME
    if not show_preview:
        body = ngettext("You have %(n)d new message.", "You have %(n)d new messages.", count) % {"n": count}
        return {"title": app, "body": body, "data": data, "badge": badge}
    last = pending[0]
    line = last.text if last.kind in ("text", "system") else KIND_LABELS.get(last.kind, "")
    if last.is_group:
        line = f"{last.sender_name}: {line}"
    if len(conversations) > 1:
        title = app
        body = ngettext("%(n)d new message in %(c)d chats", "%(n)d new messages in %(c)d chats", count) % {
            "n": count,
            "c": len(conversations),
        }
        body = f"{body}\n{line}"
    else:
        title = last.conversation_name if last.is_group else last.sender_name
        body = line if count == 1 else _("[%(n)d messages] %(line)s") % {"n": count, "line": line}
    return {"title": title or app, "body": body, "data": data, "badge": badge}


def deliver(*, user_id: int, fields: dict[str, Any]) -> None:
    """Hand one notification to the push plumbing (``superapp.core.push``)."""
    from superapp.core import push

    push.notify_users(
        user_ids=[user_id],
        notification=push.Notification(collapse_key=f"messages-{user_id}", **fields),
    )


def flush_user(user_id: int) -> bool:
    """Push one summary to an offline user; True when something was pushed. Outside a transaction."""
    presence.release_windows([_window_key(user_id)])
    pending, newest = pending_for(user_id)
    if pending and not presence.online_ids([user_id]):
        prefs = UserSettings.objects.filter(user_id=user_id).values_list("show_preview", flat=True).first()
        show_preview = True if prefs is None else prefs
        deliver(user_id=user_id, fields=build(pending, show_preview=show_preview, badge=badge_for(user_id)))
        pushed = True
    else:
        pushed = False
    if newest:
        _advance_bookmark(user_id, newest)
    return pushed


def _advance_bookmark(user_id: int, newest: int) -> None:
    updated = UserSettings.objects.filter(user_id=user_id).update(
        last_pushed_message_id=Greatest(F("last_pushed_message_id"), newest)
    )
    if not updated:
        UserSettings.objects.get_or_create(user_id=user_id, defaults={"last_pushed_message_id": newest})
