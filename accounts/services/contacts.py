"""Contacts: friend requests, friends (remark, tags), tags, blocks, the friend QR code."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

import qrcode
from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from superapp.core import events as core_events
from superapp.core.errors import Conflict, Forbidden, NotFound, ValidationFailed

from .. import events, selectors
from ..models import Block, ContactTag, FriendRequest, Friendship, User
from . import hooks

QR_SALT = "accounts.friend-qr"
SEARCH_SALT = "accounts.search-result"
SEARCH_TOKEN_MAX_AGE = 24 * 3600
SOURCES = ("search", "qr")


@dataclass(frozen=True)
class RequestOutcome:
    """What sending a request did: left it pending, or made the two friends at once."""

    request: FriendRequest
    became_friends: bool


def _lock_pair(a: int, b: int) -> tuple[User, User]:
    """Lock both users' rows in ascending id order (serialises writes about this pair)."""
    users = {u.pk: u for u in User.objects.select_for_update().filter(pk__in=[a, b]).order_by("pk")}
    if a not in users or b not in users:
        raise NotFound()
    return users[a], users[b]


def _make_friends(request: FriendRequest, *, remark: str = "") -> None:
    """Write both friendship rows, close the request, publish. Caller holds the pair lock."""
    now = timezone.now()
    requester, accepter = request.from_user, request.to_user
    Friendship.objects.bulk_create(
        [
            Friendship(user=requester, friend=accepter, source=request.source),
            Friendship(user=accepter, friend=requester, source=request.source, remark=remark[:64]),
        ],
        ignore_conflicts=True,
    )
    request.status = FriendRequest.Status.ACCEPTED
    request.responded_at = now
    request.save(update_fields=["status", "responded_at"])
    # Any request the other way is settled by this friendship too.
    FriendRequest.objects.filter(
        from_user=accepter, to_user=requester, status=FriendRequest.Status.PENDING
    ).update(status=FriendRequest.Status.ACCEPTED, responded_at=now)
    hooks.contacts_changed([requester.pk, accepter.pk], removed=False)
    core_events.publish_many(
        specs=[
            core_events.EventSpec(
                user_ids=[requester.pk],
                type=events.REQUEST_ACCEPTED,
                data={"request": events.friend_request(request)},
            ),
            core_events.EventSpec(
                user_ids=[requester.pk],
                type=events.FRIEND_ADDED,
                data={"friend": events.user_public(accepter), "remark": "", "source": request.source},
            ),
            core_events.EventSpec(
                user_ids=[accepter.pk],
                type=events.FRIEND_ADDED,
                data={
                    "friend": events.user_public(requester),
                    "remark": remark[:64],
                    "source": request.source,
                },
            ),
        ]
    )


def friend_qr_token(*, user: User) -> str:
    """A signed, expiring token naming the user: what the friend QR code carries."""
    return signing.dumps({"u": user.pk}, salt=QR_SALT, compress=True)


def friend_qr_url(*, user: User) -> str:
    return f"superapp://contacts/add?code={friend_qr_token(user=user)}"


def friend_qr_png(*, user: User) -> bytes:
    image = qrcode.make(friend_qr_url(user=user), box_size=8, border=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def friend_qr_resolve(*, viewer: User, code: str) -> User:
    """The user a friend QR code names (400 when tampered with or expired)."""
    if code.startswith("superapp://"):
        code = code.split("code=", 1)[-1]
    try:
        payload = signing.loads(code, salt=QR_SALT, max_age=settings.FRIEND_QR_TTL)
    except signing.SignatureExpired:
        raise ValidationFailed(_("This QR code has expired."), code="qr_expired") from None
    except signing.BadSignature:
        raise ValidationFailed(_("This is not a superapp friend code."), code="qr_invalid") from None
    target = selectors.user_get(user_id=int(payload["u"]))
    if selectors.has_blocked(blocker_id=target.pk, blocked_id=viewer.pk):
        raise NotFound()
    return target


def friend_search_token(*, viewer: User, target: User) -> str:
    """Proof that ``viewer`` found ``target`` by search: what a search-sourced request carries.

    User ids are sequential; without this anyone could send requests down the id range to
    people who chose to be findable only by someone who knows their handle or phone.
    """
    return signing.dumps({"v": viewer.pk, "t": target.pk}, salt=SEARCH_SALT)


def _check_search_token(token: str, *, viewer: User, target: User) -> None:
    try:
        payload = signing.loads(token, salt=SEARCH_SALT, max_age=SEARCH_TOKEN_MAX_AGE)
    except signing.BadSignature:
        payload = None
    if payload != {"v": viewer.pk, "t": target.pk}:
        raise ValidationFailed(
            _("Search for this user again, then send the request."),
            code="search_token_invalid",
            fields={"search_token": [_("Missing, expired or for another user.")]},
        )


@transaction.atomic
def friend_request_send(
    *,
    from_user: User,
    to_user_id: int,
    note: str = "",
    source: str = "search",
    qr_code: str = "",
    search_token: str | None = None,
) -> RequestOutcome:
    """Ask to be friends.

    Refused when either side blocked the other or they are already friends. A user found by
    search must allow being found (by handle or phone) and, when ``search_token`` is a string
    (the API always passes one), it must be the token the search gave; ``None`` is for internal
    callers that know how the two met. A QR code must name the target. If the target asked
    first, or does not require approval, the two become friends at once.
    """
    if source not in SOURCES:
        raise ValidationFailed(fields={"source": [_("One of: %(s)s.") % {"s": ", ".join(SOURCES)}]})
    if to_user_id == from_user.pk:
        raise ValidationFailed(_("You cannot add yourself."), code="cannot_add_self")
    note = (note or "").strip()
    if len(note) > 100:
        raise ValidationFailed(fields={"note": [_("At most 100 characters.")]})
    sender, target = _lock_pair(from_user.pk, to_user_id)
    if not target.is_active or not target.is_verified:
        raise NotFound()
    if selectors.has_blocked(blocker_id=target.pk, blocked_id=sender.pk):
        raise Forbidden(_("This user does not accept your requests."), code="cannot_add")
    if selectors.has_blocked(blocker_id=sender.pk, blocked_id=target.pk):
        raise Conflict(_("Unblock this user first."), code="blocked_by_you")
    if Friendship.objects.filter(user=sender, friend=target).exists():
        raise Conflict(_("You are already friends."), code="already_friends")
    if source == "qr":
        if not qr_code or friend_qr_resolve(viewer=sender, code=qr_code).pk != target.pk:
            raise ValidationFailed(_("The QR code does not name this user."), code="qr_invalid")
    else:
        if not (target.findable_by_handle or target.findable_by_phone):
            raise Forbidden(_("This user can only be added by QR code."), code="cannot_add")
        if search_token is not None:
            _check_search_token(search_token, viewer=sender, target=target)

    reverse = FriendRequest.objects.filter(
        from_user=target, to_user=sender, status=FriendRequest.Status.PENDING
    ).first()
    if reverse is not None:
        _make_friends(reverse)
        return RequestOutcome(request=reverse, became_friends=True)

    request, _created = FriendRequest.objects.update_or_create(
        from_user=sender,
        to_user=target,
        status=FriendRequest.Status.PENDING,
        defaults={"note": note, "source": source, "created_at": timezone.now()},
    )
    if not target.friend_requests_need_approval:
        _make_friends(request)
        return RequestOutcome(request=request, became_friends=True)
    payload = {"request": events.friend_request(request)}
    core_events.publish_many(
        specs=[
            core_events.EventSpec(user_ids=[target.pk], type=events.REQUEST_RECEIVED, data=payload),
            core_events.EventSpec(user_ids=[sender.pk], type=events.REQUEST_SENT, data=payload),
        ]
    )
    return RequestOutcome(request=request, became_friends=False)


def _pending_request_to(user: User, request_id: int) -> FriendRequest:
    request = (
        FriendRequest.objects.select_related("from_user", "to_user")
        .filter(pk=request_id, to_user=user)
        .first()
    )
    if request is None:
        raise NotFound()
    if request.status != FriendRequest.Status.PENDING:
        raise Conflict(_("This request was already answered."), code="request_closed")
    return request


@transaction.atomic
def friend_request_accept(*, user: User, request_id: int, remark: str = "") -> FriendRequest:
    request = _pending_request_to(user, request_id)
    _lock_pair(request.from_user_id, request.to_user_id)
    request = _pending_request_to(user, request_id)  # re-read under the lock
    if selectors.is_blocked_between(user_a=request.from_user_id, user_b=user.pk):
        raise Forbidden(_("Unblock this user first."), code="blocked")
    if Friendship.objects.filter(user=user, friend_id=request.from_user_id).exists():
        raise Conflict(_("You are already friends."), code="already_friends")
    _make_friends(request, remark=remark)
    return request


@transaction.atomic
def friend_request_decline(*, user: User, request_id: int) -> FriendRequest:
    request = _pending_request_to(user, request_id)
    # Same lock as accept and send: a decline racing an accept must see its outcome, not overwrite it.
    _lock_pair(request.from_user_id, request.to_user_id)
    request = _pending_request_to(user, request_id)  # re-read under the lock
    request.status = FriendRequest.Status.DECLINED
    request.responded_at = timezone.now()
    request.save(update_fields=["status", "responded_at"])
    core_events.publish(
        user_ids=[user.pk], type=events.REQUEST_DECLINED, data={"request": events.friend_request(request)}
    )
    return request


@transaction.atomic
def friend_remove(*, user: User, friend_id: int) -> None:
    """Delete the friendship on both sides (and the friend from the user's tags)."""
    _lock_pair(user.pk, friend_id)
    deleted, _rows = Friendship.objects.filter(
        Q(user=user, friend_id=friend_id) | Q(user_id=friend_id, friend=user)
    ).delete()
    if not deleted:
        raise NotFound()
    hooks.contacts_changed([user.pk, friend_id], removed=True)
    through = ContactTag.members.through
    through.objects.filter(
        Q(contacttag__owner=user, user_id=friend_id) | Q(contacttag__owner_id=friend_id, user_id=user.pk)
    ).delete()
    core_events.publish_many(
        specs=[
            core_events.EventSpec(
                user_ids=[user.pk], type=events.FRIEND_REMOVED, data={"user_id": friend_id}
            ),
            core_events.EventSpec(
                user_ids=[friend_id], type=events.FRIEND_REMOVED, data={"user_id": user.pk}
            ),
        ]
    )


def _own_tags(owner: User, tag_ids: Iterable[int]) -> list[ContactTag]:
    tag_ids = list(dict.fromkeys(tag_ids))
    tags = list(ContactTag.objects.filter(owner=owner, pk__in=tag_ids))
    if len(tags) != len(tag_ids):
        raise ValidationFailed(fields={"tag_ids": [_("Unknown tag.")]})
    return tags


def _own_friends(owner: User, user_ids: Iterable[int]) -> list[int]:
    user_ids = list(dict.fromkeys(user_ids))
    found = set(
        Friendship.objects.filter(user=owner, friend_id__in=user_ids).values_list("friend_id", flat=True)
    )
    if len(found) != len(user_ids):
        raise ValidationFailed(fields={"member_ids": [_("Only friends can be tagged.")]})
    return user_ids


@transaction.atomic
def friend_update(
    *, user: User, friend_id: int, remark: str | None = None, tag_ids: list[int] | None = None
) -> Friendship:
    """Set the remark name and/or the tags of one friend."""
    friendship = Friendship.objects.select_for_update().filter(user=user, friend_id=friend_id).first()
    if friendship is None:
        raise NotFound()
    through = ContactTag.members.through
    if tag_ids is not None:
        # My tags locked, in id order, before "before" is read: a concurrent tag_update (it locks
        # its tag) cannot change who is in them between that read and this request's writes,
        # which would make an unchanged-looking request hide its re-insert from my devices.
        list(
            ContactTag.objects.select_for_update()
            .filter(owner=user)
            .order_by("pk")
            .values_list("pk", flat=True)
        )

    def tag_ids_now() -> list[int]:
        return sorted(
            through.objects.filter(contacttag__owner=user, user_id=friend_id).values_list(
                "contacttag_id", flat=True
            )
        )

    before = (friendship.remark, tag_ids_now())
    if remark is not None:
        remark = remark.strip()
        if len(remark) > 64:
            raise ValidationFailed(fields={"remark": [_("At most 64 characters.")]})
        if remark != friendship.remark:
            friendship.remark = remark
            friendship.save(update_fields=["remark"])
    if tag_ids is not None:
        wanted = _own_tags(user, tag_ids)
        through.objects.filter(contacttag__owner=user, user_id=friend_id).exclude(
            contacttag_id__in=[t.pk for t in wanted]
        ).delete()
        through.objects.bulk_create(
            [through(contacttag_id=t.pk, user_id=friend_id) for t in wanted], ignore_conflicts=True
        )
    after = (friendship.remark, tag_ids_now() if tag_ids is not None else before[1])
    if after != before:  # a request that changes nothing tells no device anything
        core_events.publish(
            user_ids=[user.pk],
            type=events.FRIEND_UPDATED,
            data={"user_id": friend_id, "remark": after[0], "tag_ids": after[1]},
        )
    if after[1] != before[1]:
        _tags_changed(user)  # the tags' member lists changed too (devices may keep those)
    return friendship


def _tags_changed(owner: User) -> None:
    tags = [
        {"id": t.pk, "name": t.name, "member_ids": sorted(m.pk for m in t.members.all())}
        for t in selectors.tag_list(owner=owner)
    ]
    core_events.publish(user_ids=[owner.pk], type=events.TAGS_UPDATED, data={"tags": tags})


def _clean_tag_name(name: str) -> str:
    name = (name or "").strip()
    if not 1 <= len(name) <= 32:
        raise ValidationFailed(fields={"name": [_("1 to 32 characters.")]})
    return name


@transaction.atomic
def tag_create(*, owner: User, name: str, member_ids: list[int] | None = None) -> ContactTag:
    name = _clean_tag_name(name)
    if ContactTag.objects.filter(owner=owner, name=name).exists():
        raise Conflict(_("You already have a tag with this name."), code="tag_exists")
    try:
        with transaction.atomic():  # a concurrent create may win the unique constraint
            tag = ContactTag.objects.create(owner=owner, name=name)
    except IntegrityError:
        raise Conflict(_("You already have a tag with this name."), code="tag_exists") from None
    if member_ids:
        tag.members.set(_own_friends(owner, member_ids))
    _tags_changed(owner)
    return tag


@transaction.atomic
def tag_update(
    *, owner: User, tag_id: int, name: str | None = None, member_ids: list[int] | None = None
) -> ContactTag:
    tag = ContactTag.objects.select_for_update().filter(owner=owner, pk=tag_id).first()
    if tag is None:
        raise NotFound()
    if name is not None:
        name = _clean_tag_name(name)
        if ContactTag.objects.filter(owner=owner, name=name).exclude(pk=tag.pk).exists():
            raise Conflict(_("You already have a tag with this name."), code="tag_exists")
        tag.name = name
        try:
            with transaction.atomic():  # a concurrent rename may win the unique constraint
                tag.save(update_fields=["name"])
        except IntegrityError:
            raise Conflict(_("You already have a tag with this name."), code="tag_exists") from None
    if member_ids is not None:
        tag.members.set(_own_friends(owner, member_ids))
    _tags_changed(owner)
    return tag


@transaction.atomic
def tag_delete(*, owner: User, tag_id: int) -> None:
    deleted, _rows = ContactTag.objects.filter(owner=owner, pk=tag_id).delete()
    if not deleted:
        raise NotFound()
    _tags_changed(owner)


@transaction.atomic
def block_add(*, user: User, target_id: int) -> Block:
    """Block a user: they can send no requests or messages, and see nothing of the blocker.

    The contact entry is kept (as in WeChat's blacklist) so that unblocking restores it and the
    contact list still shows it; while the block lasts ``are_friends``, ``friend_ids`` and
    ``tag_member_ids`` treat the two as not friends, so no feature reaches across it. Pending requests between the
    two are declined.
    """
    if target_id == user.pk:
        raise ValidationFailed(_("You cannot block yourself."), code="cannot_block_self")
    _blocker, target = _lock_pair(user.pk, target_id)
    block, created = Block.objects.get_or_create(blocker=user, blocked=target)
    if created:
        FriendRequest.objects.filter(
            Q(from_user=user, to_user=target) | Q(from_user=target, to_user=user),
            status=FriendRequest.Status.PENDING,
        ).update(status=FriendRequest.Status.DECLINED, responded_at=timezone.now())
        hooks.contacts_changed([user.pk, target.pk], removed=True)
        core_events.publish(
            user_ids=[user.pk], type=events.BLOCK_ADDED, data={"user": events.user_public(target)}
        )
    return block


@transaction.atomic
def block_remove(*, user: User, target_id: int) -> None:
    deleted, _rows = Block.objects.filter(blocker=user, blocked_id=target_id).delete()
    if not deleted:
        raise NotFound()
    hooks.contacts_changed([user.pk, target_id], removed=False)
    core_events.publish(user_ids=[user.pk], type=events.BLOCK_REMOVED, data={"user_id": target_id})
