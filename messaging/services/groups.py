"""Groups: create, members (invite, approval, link, leave, remove, roles), settings, dissolve.

Roles: one owner, any number of admins, members. Every change is stored and published in one
transaction: a system message in the history ("X joined") and a structured event for clients'
state (``conversation.member.added`` ...). A newcomer sees the history from their join on.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

import qrcode
from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import selectors as account_selectors
from superapp.core import events as core_events
from superapp.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from superapp.core.images import process_image

from .. import content, events
from ..models import Conversation, JoinRequest, Member
from . import _core

INVITE_SALT = "messaging.group-invite"
Role = Member.Role


@dataclass(frozen=True)
class InviteOutcome:
    added: list[int]
    requested: list[int]  # waiting for the owner's or an admin's approval


def _user_ids(value: Any, field: str, *, allow_empty: bool = False) -> list[int]:
    if not isinstance(value, list) or (not value and not allow_empty) or len(value) > _core.group_limit():
        raise ValidationFailed(_("A list of user ids is required."), fields={field: [_("1-500 user ids.")]})
    return sorted({content.positive_int(v, field) for v in value})  # type: ignore[misc]


def _name(value: Any) -> str:
    if not isinstance(value, str) or len(value.strip()) > 64:
        raise ValidationFailed(
            _("A name of at most 64 characters."), fields={"name": [_("At most 64 characters.")]}
        )
    return value.strip()


def _group_roster(conversation_id: int, *, user_id: int) -> _core.Roster:
    r = _core.roster(conversation_id, user_id=user_id)
    if not r.conversation.is_group:
        raise ValidationFailed(_("This is not a group."), code="not_a_group")
    return r


def _require(member: Member, *roles: str) -> None:
    if member.role not in roles:
        raise Forbidden(_("Only the group's owner or admins can do this."), code="not_group_admin")


def _check_friends(inviter_id: int, user_ids: list[int]) -> None:
    friends = account_selectors.friend_ids(user_id=inviter_id)
    strangers = [u for u in user_ids if u not in friends]
    if strangers:
        raise ValidationFailed(
            _("You can add only your friends."), code="not_friends", fields={"user_ids": [str(strangers)]}
        )


def _add_members(
    r: _core.Roster, user_ids: list[int], *, actor_id: int | None, how: str
) -> list[core_events.EventSpec]:
    """Bring users in (new rows, or former members back); returns the events to publish."""
    new_ids = [u for u in user_ids if u not in r.members]
    if not new_ids:
        return []
    if len(r.members) + len(new_ids) > _core.group_limit():
        raise ValidationFailed(
            _("A group has at most %(max)d members.") % {"max": _core.group_limit()}, code="group_full"
        )
    conv = r.conversation
    former = set(
        Member.objects.filter(conversation=conv, user_id__in=new_ids).values_list("user_id", flat=True)
    )
    now = timezone.now()
    if former:
        Member.objects.filter(conversation=conv, user_id__in=former).update(
            left_at=None, role=Role.MEMBER, joined_seq=conv.last_seq, last_read_seq=conv.last_seq,
            last_mention_seq=0, muted=False, pinned=False, nickname="", joined_at=now,
        )  # fmt: skip
    Member.objects.bulk_create(
        [
            Member(conversation=conv, user_id=u, joined_seq=conv.last_seq, last_read_seq=conv.last_seq)
            for u in new_ids
            if u not in former
        ]
    )
    added = list(Member.objects.filter(conversation=conv, user_id__in=new_ids).select_related("user"))
    for m in added:
        r.members[m.user_id] = m
    _core.bump_member_count(r)
    note = _core.system_message(r, actor_id=actor_id, event=f"member.{how}", user_ids=new_ids)
    return [
        core_events.EventSpec(new_ids, events.CONVERSATION_NEW, {"conversation": events.conversation(conv)}),
        core_events.EventSpec(
            r.user_ids,
            events.MEMBER_ADDED,
            {"conversation_id": conv.pk, "members": [events.member(m) for m in added], "by": actor_id},
        ),
        _core.new_message_spec(r, note),
    ]


def _remove_member(
    r: _core.Roster, user_id: int, *, actor_id: int, reason: str
) -> list[core_events.EventSpec]:
    gone = r.members.pop(user_id)
    Member.objects.filter(pk=gone.pk).update(left_at=timezone.now(), role=Role.MEMBER)
    _core.bump_member_count(r)
    note = _core.system_message(r, actor_id=actor_id, event=f"member.{reason}", user_ids=[user_id])
    return [
        core_events.EventSpec(
            [*r.user_ids, user_id],
            events.MEMBER_REMOVED,
            {"conversation_id": r.conversation.pk, "user_id": user_id, "reason": reason, "by": actor_id},
        ),
        _core.new_message_spec(r, note),
    ]


def _conversation_updated(r: _core.Roster, changed: list[str]) -> core_events.EventSpec:
    return core_events.EventSpec(
        r.user_ids,
        events.CONVERSATION_UPDATED,
        {"conversation": events.conversation(r.conversation), "changed": changed},
    )


@transaction.atomic
def group_create(*, creator_id: int, name: Any = "", member_ids: Any) -> Conversation:
    """A new group of the creator (owner) and some of the creator's friends."""
    name = _name(name or "")
    ids = [u for u in _user_ids(member_ids, "member_ids") if u != creator_id]
    if not ids:
        raise ValidationFailed(
            _("Add at least one friend."), fields={"member_ids": [_("At least one friend.")]}
        )
    if len(ids) + 1 > _core.group_limit():
        raise ValidationFailed(
            _("A group has at most %(max)d members.") % {"max": _core.group_limit()}, code="group_full"
        )
    _check_friends(creator_id, ids)
    conv = Conversation.objects.create(kind=Conversation.Kind.GROUP, name=name, owner_id=creator_id)
    Member.objects.create(conversation=conv, user_id=creator_id, role=Role.OWNER)
    r = _core.roster(conv.pk, user_id=creator_id)
    specs = [
        core_events.EventSpec(
            [creator_id], events.CONVERSATION_NEW, {"conversation": events.conversation(conv)}
        )
    ]
    specs += _add_members(r, ids, actor_id=creator_id, how="invited")
    core_events.publish_many(specs=specs)
    return r.conversation


@transaction.atomic
def group_update(
    *,
    user_id: int,
    conversation_id: int,
    name: Any = None,
    announcement: Any = None,
    invite_approval: Any = None,
) -> Conversation:
    """Rename (any member), set the announcement (owner/admins; every member is notified), or
    switch invite approval (owner)."""
    r = _group_roster(conversation_id, user_id=user_id)
    me, conv = r.members[user_id], r.conversation
    changed: list[str] = []
    specs: list[core_events.EventSpec] = []
    if invite_approval is not None:
        if not isinstance(invite_approval, bool):
            raise ValidationFailed(fields={"invite_approval": [_("true or false.")]})
        _require(me, Role.OWNER)
        if conv.invite_approval != invite_approval:
            conv.invite_approval = invite_approval
            changed.append("invite_approval")
    if name is not None:
        name = _name(name)
        if name != conv.name:
            conv.name = name
            changed.append("name")
            specs.append(
                _core.new_message_spec(
                    r, _core.system_message(r, actor_id=user_id, event="renamed", name=name)
                )
            )
    if announcement is not None:
        if not isinstance(announcement, str) or len(announcement) > settings.MESSAGING_ANNOUNCEMENT_MAX:
            raise ValidationFailed(
                fields={
                    "announcement": [
                        _("At most %(max)d characters.") % {"max": settings.MESSAGING_ANNOUNCEMENT_MAX}
                    ]
                }
            )
        _require(me, Role.OWNER, Role.ADMIN)
        conv.announcement, conv.announcement_at = announcement, timezone.now()
        changed += ["announcement", "announcement_at"]
        if announcement:
            # A system line carrying the text, as a mention of everyone: it reaches muted members too.
            note = _core.append(
                r, sender_id=user_id, kind="system", text=announcement,
                body={"event": "announcement", "actor_id": user_id}, mention_all=True, reader_id=user_id,
            )  # fmt: skip
            specs.append(_core.new_message_spec(r, note))
            notify = [u for u in r.members if u != user_id]
            from .. import notifications

            notifications.schedule_on_commit(sender_id=user_id, recipient_ids=notify)
    if not changed:
        return conv
    Conversation.objects.filter(pk=conv.pk).update(
        name=conv.name, announcement=conv.announcement, announcement_at=conv.announcement_at,
        invite_approval=conv.invite_approval,
    )  # fmt: skip
    core_events.publish_many(specs=[_conversation_updated(r, changed), *specs])
    return conv


@transaction.atomic
def group_avatar_set(*, user_id: int, conversation_id: int, upload) -> Conversation:
    r = _group_roster(conversation_id, user_id=user_id)
    _require(r.members[user_id], Role.OWNER, Role.ADMIN)
    full, thumb = settings.MESSAGING_GROUP_AVATAR_SIZES
    image = process_image(
        upload, max_bytes=settings.MESSAGING_IMAGE_MAX_BYTES, max_pixels=settings.MESSAGING_IMAGE_MAX_PIXELS,
        full_size=full, thumb_size=thumb, field="avatar",
    )  # fmt: skip
    conv = r.conversation
    old = [f.name for f in (conv.avatar, conv.avatar_thumb) if f]
    conv.avatar.save(image.full.name, image.full, save=False)
    conv.avatar_thumb.save(image.thumb.name, image.thumb, save=False)
    conv.save(update_fields=["avatar", "avatar_thumb"])
    storage = conv.avatar.storage
    transaction.on_commit(lambda: [storage.delete(n) for n in old])
    note = _core.system_message(r, actor_id=user_id, event="avatar_changed")
    core_events.publish_many(
        specs=[_conversation_updated(r, ["avatar_url", "avatar_thumb_url"]), _core.new_message_spec(r, note)]
    )
    return conv


@transaction.atomic
def group_invite(*, user_id: int, conversation_id: int, user_ids: Any) -> InviteOutcome:
    """Members invite their friends. With invite approval on, a plain member's invitations wait
    for the owner or an admin (they get a ``conversation.join_request`` event)."""
    ids = _user_ids(user_ids, "user_ids")
    r = _group_roster(conversation_id, user_id=user_id)
    ids = [u for u in ids if u not in r.members]
    if not ids:
        return InviteOutcome(added=[], requested=[])
    _check_friends(user_id, ids)
    me = r.members[user_id]
    if r.conversation.invite_approval and not me.is_manager:
        return InviteOutcome(added=[], requested=_request_join(r, ids, inviter_id=user_id, via_link=False))
    core_events.publish_many(specs=_add_members(r, ids, actor_id=user_id, how="invited"))
    return InviteOutcome(added=ids, requested=[])


def _request_join(
    r: _core.Roster, user_ids: list[int], *, inviter_id: int | None, via_link: bool
) -> list[int]:
    pending = set(
        JoinRequest.objects.filter(
            conversation=r.conversation, user_id__in=user_ids, status=JoinRequest.Status.PENDING
        ).values_list("user_id", flat=True)
    )
    fresh = [u for u in user_ids if u not in pending]
    JoinRequest.objects.bulk_create(
        [
            JoinRequest(conversation=r.conversation, user_id=u, inviter_id=inviter_id, via_link=via_link)
            for u in fresh
        ]
    )
    requests = list(
        JoinRequest.objects.filter(
            conversation=r.conversation, user_id__in=fresh, status="pending"
        ).select_related("user")
    )
    managers = [u for u, m in r.members.items() if m.is_manager]
    core_events.publish_many(
        specs=[
            core_events.EventSpec(managers, events.JOIN_REQUEST, {"request": events.join_request(req)})
            for req in requests
        ]
    )
    return sorted(user_ids)


@transaction.atomic
def join_request_decide(*, user_id: int, request_id: int, approve: bool) -> JoinRequest:
    req = JoinRequest.objects.select_related("user").filter(pk=request_id).first()
    if req is None:
        raise NotFound()
    r = _group_roster(req.conversation_id, user_id=user_id)
    _require(r.members[user_id], Role.OWNER, Role.ADMIN)
    req = JoinRequest.objects.select_for_update().select_related("user").get(pk=request_id)
    if req.status != JoinRequest.Status.PENDING:
        raise Conflict(_("This request was already decided."), code="already_decided")
    req.status = JoinRequest.Status.APPROVED if approve else JoinRequest.Status.DECLINED
    req.decided_at, req.decided_by_id = timezone.now(), user_id
    req.save(update_fields=["status", "decided_at", "decided_by"])
    specs: list[core_events.EventSpec] = []
    if approve and req.user_id not in r.members:
        specs = _add_members(
            r, [req.user_id], actor_id=req.inviter_id or user_id, how="joined" if req.via_link else "invited"
        )
    managers = [u for u, m in r.members.items() if m.is_manager]
    specs.append(core_events.EventSpec(managers, events.JOIN_REQUEST, {"request": events.join_request(req)}))
    core_events.publish_many(specs=specs)
    return req


def group_invite_link(*, user_id: int, conversation_id: int, expires_in: Any = None) -> tuple[str, int]:
    """A signed invitation code to join the group (what the group QR code carries); any member
    may make one. Returns ``(code, expires_at unix time)``. Revoked by ``group_invite_links_revoke``."""
    max_ttl = int(settings.MESSAGING_INVITE_LINK_TTL.total_seconds())
    ttl = max_ttl if expires_in is None else content.positive_int(expires_in, "expires_in")
    if ttl > max_ttl:  # type: ignore[operator]
        raise ValidationFailed(fields={"expires_in": [_("At most %(s)d seconds.") % {"s": max_ttl}]})
    member = (
        Member.objects.select_related("conversation")
        .filter(conversation_id=conversation_id, user_id=user_id, left_at__isnull=True)
        .first()
    )
    if member is None:
        raise NotFound(_("No such conversation."), code="conversation_not_found")
    if not member.conversation.is_group:
        raise ValidationFailed(_("This is not a group."), code="not_a_group")
    expires_at = int(time.time()) + int(ttl)  # type: ignore[arg-type]
    code = signing.dumps(
        {"c": conversation_id, "v": member.conversation.invite_link_version, "i": user_id, "e": expires_at},
        salt=INVITE_SALT, compress=True,
    )  # fmt: skip
    return code, expires_at


def group_invite_url(code: str) -> str:
    return f"superapp://groups/join?code={code}"


def group_invite_qr_png(code: str) -> bytes:
    buffer = io.BytesIO()
    qrcode.make(group_invite_url(code), box_size=8, border=2).save(buffer, format="PNG")
    return buffer.getvalue()


@transaction.atomic
def group_invite_links_revoke(*, user_id: int, conversation_id: int) -> None:
    r = _group_roster(conversation_id, user_id=user_id)
    _require(r.members[user_id], Role.OWNER, Role.ADMIN)
    Conversation.objects.filter(pk=conversation_id).update(
        invite_link_version=r.conversation.invite_link_version + 1
    )


@transaction.atomic
def group_join_by_link(*, user_id: int, code: Any) -> tuple[Conversation, bool]:
    """Join with an invitation code; returns ``(group, joined)`` (False: waiting for approval)."""
    if not isinstance(code, str):
        raise ValidationFailed(fields={"code": [_("Required.")]})
    code = code.split("code=", 1)[-1]
    try:
        data = signing.loads(code, salt=INVITE_SALT)
    except signing.BadSignature:
        raise ValidationFailed(_("This is not a valid group invitation."), code="invite_invalid") from None
    if data.get("e", 0) < time.time():
        raise ValidationFailed(_("This group invitation has expired."), code="invite_expired")
    conv = _core.lock_conversations([data["c"]]).get(data["c"])
    if conv is None or conv.dissolved_at is not None or conv.invite_link_version != data.get("v"):
        raise ValidationFailed(_("This group invitation is no longer valid."), code="invite_revoked")
    r = _core.Roster(conv, _core.active_members([conv.pk]).get(conv.pk, {}))
    inviter_id = data.get("i")
    if inviter_id not in r.members:
        raise ValidationFailed(_("This group invitation is no longer valid."), code="invite_revoked")
    if user_id in r.members:
        return conv, True
    if account_selectors.is_blocked_between(user_a=user_id, user_b=inviter_id):
        raise Forbidden(_("You cannot join this group."), code="blocked")
    if conv.invite_approval and not r.members[inviter_id].is_manager:
        _request_join(r, [user_id], inviter_id=inviter_id, via_link=True)
        return conv, False
    core_events.publish_many(specs=_add_members(r, [user_id], actor_id=inviter_id, how="joined"))
    return conv, True


def _next_owner(r: _core.Roster, leaving: int) -> int | None:
    rest = [m for u, m in r.members.items() if u != leaving]
    if not rest:
        return None
    rest.sort(key=lambda m: (m.role != Role.ADMIN, m.pk))  # the oldest admin, else the oldest member
    return rest[0].user_id


def _set_owner(r: _core.Roster, new_owner: int, *, old_owner: int | None) -> None:
    if old_owner is not None and old_owner in r.members:
        Member.objects.filter(pk=r.members[old_owner].pk).update(role=Role.MEMBER)
        r.members[old_owner].role = Role.MEMBER
    Member.objects.filter(pk=r.members[new_owner].pk).update(role=Role.OWNER)
    r.members[new_owner].role = Role.OWNER
    r.conversation.owner_id = new_owner
    Conversation.objects.filter(pk=r.conversation.pk).update(owner_id=new_owner)


@transaction.atomic
def group_remove_member(*, user_id: int, conversation_id: int, target_id: int) -> None:
    """Leave (``target_id`` = me) or remove someone: the owner removes anyone, an admin plain
    members. An owner who leaves hands the group to the oldest admin (else the oldest member);
    the last member leaving dissolves it."""
    r = _group_roster(conversation_id, user_id=user_id)
    me = r.members[user_id]
    if target_id == user_id:
        specs: list[core_events.EventSpec] = []
        if me.role == Role.OWNER:
            heir = _next_owner(r, user_id)
            if heir is None:
                _dissolve(r, actor_id=user_id)
                return
            _set_owner(r, heir, old_owner=user_id)
            specs.append(_conversation_updated(r, ["owner_id"]))
        specs += _remove_member(r, user_id, actor_id=user_id, reason="left")
        core_events.publish_many(specs=specs)
        return
    target = r.members.get(target_id)
    if target is None:
        raise NotFound(_("Not a member."), code="member_not_found")
    allowed = me.role == Role.OWNER or (me.role == Role.ADMIN and target.role == Role.MEMBER)
    if not allowed:
        raise Forbidden(_("You cannot remove this member."), code="not_group_admin")
    core_events.publish_many(specs=_remove_member(r, target_id, actor_id=user_id, reason="removed"))


@transaction.atomic
def group_set_role(*, user_id: int, conversation_id: int, target_id: int, role: Any) -> Member:
    """The owner makes a member an admin or an admin a member."""
    if role not in (Role.ADMIN, Role.MEMBER):
        raise ValidationFailed(fields={"role": [_("admin or member.")]})
    r = _group_roster(conversation_id, user_id=user_id)
    _require(r.members[user_id], Role.OWNER)
    target = r.members.get(target_id)
    if target is None:
        raise NotFound(_("Not a member."), code="member_not_found")
    if target.role == Role.OWNER:
        raise ValidationFailed(_("Transfer the ownership instead."), code="is_owner")
    if target.role != role:
        Member.objects.filter(pk=target.pk).update(role=role)
        target = Member.objects.select_related("user").get(pk=target.pk)
        core_events.publish(
            user_ids=r.user_ids, type=events.MEMBER_UPDATED,
            data={"conversation_id": conversation_id, "member": events.member(target)},
        )  # fmt: skip
    return target


@transaction.atomic
def group_transfer(*, user_id: int, conversation_id: int, target_id: int) -> Conversation:
    r = _group_roster(conversation_id, user_id=user_id)
    _require(r.members[user_id], Role.OWNER)
    if target_id not in r.members or target_id == user_id:
        raise NotFound(_("Not a member."), code="member_not_found")
    _set_owner(r, target_id, old_owner=user_id)
    note = _core.system_message(r, actor_id=user_id, event="owner_changed", user_ids=[target_id])
    core_events.publish_many(specs=[_conversation_updated(r, ["owner_id"]), _core.new_message_spec(r, note)])
    return r.conversation


def _dissolve(r: _core.Roster, *, actor_id: int) -> None:
    conv = r.conversation
    now = timezone.now()
    conv.dissolved_at = now
    Conversation.objects.filter(pk=conv.pk).update(dissolved_at=now, member_count=0)
    everyone = r.user_ids
    Member.objects.filter(conversation=conv, left_at__isnull=True).update(left_at=now)
    core_events.publish(
        user_ids=everyone,
        type=events.CONVERSATION_DISSOLVED,
        data={"conversation_id": conv.pk, "by": actor_id},
    )


@transaction.atomic
def group_dissolve(*, user_id: int, conversation_id: int) -> None:
    r = _group_roster(conversation_id, user_id=user_id)
    _require(r.members[user_id], Role.OWNER)
    _dissolve(r, actor_id=user_id)


@transaction.atomic
def member_settings_update(
    *, user_id: int, conversation_id: int, muted: Any = None, pinned: Any = None, nickname: Any = None
) -> Member:
    """My settings in one conversation: mute, pin (my devices learn them) and my nickname in a
    group (every member learns it)."""
    member = (
        Member.objects.select_for_update()
        .select_related("conversation", "user")
        .filter(conversation_id=conversation_id, user_id=user_id, left_at__isnull=True)
        .first()
    )
    if member is None:
        raise NotFound(_("No such conversation."), code="conversation_not_found")
    changed = []
    for name, value in (("muted", muted), ("pinned", pinned)):
        if value is not None:
            if not isinstance(value, bool):
                raise ValidationFailed(fields={name: [_("true or false.")]})
            if getattr(member, name) != value:
                setattr(member, name, value)
                changed.append(name)
    specs = []
    if nickname is not None:
        if not isinstance(nickname, str) or len(nickname.strip()) > 32:
            raise ValidationFailed(fields={"nickname": [_("At most 32 characters.")]})
        if not member.conversation.is_group:
            raise ValidationFailed(_("Nicknames are for groups."), code="not_a_group")
        if member.nickname != nickname.strip():
            member.nickname = nickname.strip()
            changed.append("nickname")
            everyone = Member.objects.filter(
                conversation_id=conversation_id, left_at__isnull=True
            ).values_list("user_id", flat=True)
            specs.append(
                core_events.EventSpec(
                    sorted(everyone),
                    events.MEMBER_UPDATED,
                    {"conversation_id": conversation_id, "member": events.member(member)},
                )
            )
    if changed:
        member.save(update_fields=changed)
        specs.append(
            core_events.EventSpec([user_id], events.CONVERSATION_SETTINGS, events.member_settings(member))
        )
        core_events.publish_many(specs=specs)
    return member
