"""Seed for the ``messaging`` benchmark (run as a Django process: ``python -m bench.messaging_seed OUT``).

Users with unusable passwords (no argon2 cost) and access tokens from real login sessions:

* ``pairs``: 17 direct chats (friends, one first message each): 16 for the throughput run, one
  for the 2-member latency run;
* ``group``: one group of 500 (an owner and 499 of the owner's friends).

Writes ``{"pairs": [...], "group": {...}}`` as JSON to OUT.
"""

from __future__ import annotations

import json
import os
import sys

PAIRS = 17
GROUP_SIZE = 500


def main(out: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "superapp.settings")
    import django

    django.setup()
    from django.db import transaction

    from accounts import services as account_services
    from accounts.models import Friendship, User
    from messaging import services

    def user(handle: str) -> User:
        u = User(handle=handle, email=f"{handle}@bench.invalid", display_name=handle, is_verified=True)
        u.set_unusable_password()
        return u

    handles = [f"ms{i}" for i in range(PAIRS)] + [f"mr{i}" for i in range(PAIRS)]
    handles += ["mgowner"] + [f"mg{i}" for i in range(GROUP_SIZE - 1)]
    User.objects.bulk_create([user(h) for h in handles])
    users = {u.handle: u for u in User.objects.filter(handle__in=handles)}
    friendships = []
    for i in range(PAIRS):
        a, b = users[f"ms{i}"], users[f"mr{i}"]
        friendships += [Friendship(user=a, friend=b), Friendship(user=b, friend=a)]
    owner = users["mgowner"]
    for i in range(GROUP_SIZE - 1):
        m = users[f"mg{i}"]
        friendships += [Friendship(user=owner, friend=m), Friendship(user=m, friend=owner)]
    with transaction.atomic():
        Friendship.objects.bulk_create(friendships)

    def token(u: User) -> str:
        return account_services.session_create(user=u, device_name="bench").tokens["access"]

    pairs = []
    for i in range(PAIRS):
        a, b = users[f"ms{i}"], users[f"mr{i}"]
        first = services.message_send(
            sender_id=a.pk, to_user_id=b.pk, client_msg_id=f"seed-{i}", kind="text", text="hi"
        )
        pairs.append(
            {
                "conversation_id": first.message.conversation_id,
                "sender": {"id": a.pk, "token": token(a)},
                "receiver": {"id": b.pk, "token": token(b)},
            }
        )
    members = [users[f"mg{i}"] for i in range(GROUP_SIZE - 1)]
    conv = services.group_create(creator_id=owner.pk, name="bench 500", member_ids=[m.pk for m in members])
    group = {
        "conversation_id": conv.pk,
        "owner": {"id": owner.pk, "token": token(owner)},
        "members": [{"id": m.pk, "token": token(m)} for m in members],
    }
    with open(out, "w") as f:
        json.dump({"pairs": pairs, "group": group}, f)


if __name__ == "__main__":
    main(sys.argv[1])
