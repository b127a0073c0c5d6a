"""Hooks for apps that keep something derived from accounts' data (a cache of rendered pages).

Accounts imports no other app: an app registers a callable here (in its ``AppConfig.ready``) and
accounts' services call it **inside the writing transaction** with the users concerned. A hook
does its side effects after commit itself (``transaction.on_commit``). It may refuse a write that
takes something away (``removed=True``: an unfriend, a block, a profile change) by raising an
``ApplicationError`` (Moments' feed cache answers 503 when it cannot end the cached pages that
show it); the service lets it through, so the whole write rolls back. Otherwise it must not fail
the write (catch and log). Moments uses them for its feed cache (``moments.feed_cache``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol


class ContactsHook(Protocol):
    def __call__(self, user_ids: list[int], *, removed: bool) -> None: ...


_contacts: list[ContactsHook] = []
_profiles: list[Callable[[int], None]] = []


def on_contacts_changed(hook: ContactsHook) -> None:
    """Call ``hook(user_ids, removed=...)`` when who is whose friend changed for these users: a
    friendship made or removed, a block added or removed (both users, either direction).
    ``removed``: a friendship ended or a block was added (someone lost access)."""
    if hook not in _contacts:
        _contacts.append(hook)


def on_profile_changed(hook: Callable[[int], None]) -> None:
    """Call ``hook(user_id)`` when a user's public profile (handle, name, avatar...) changed.
    Treat it as a removal: the old name or avatar must no longer be shown."""
    if hook not in _profiles:
        _profiles.append(hook)


def contacts_changed(user_ids: Iterable[int], *, removed: bool) -> None:
    ids = sorted(set(user_ids))
    for hook in _contacts:
        hook(ids, removed=removed)


def profile_changed(user_id: int) -> None:
    for hook in _profiles:
        hook(user_id)
