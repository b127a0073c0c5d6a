"""``manage.py seed_demo``: a small world to try the app with. Idempotent: run it any number of times.

Users alice, bob and carol (password ``DEMO_PASSWORD``, default ``superapp-demo``), friends of
each other; a chat between alice and bob and a group of the three; a few Moments with a like and
a comment; wallets topped up through the sandbox provider, payment PIN ``DEMO_PIN`` (default
123456). Everything goes through the apps' services, as a client's requests would.
"""

import os

from django.core.management.base import BaseCommand

from accounts import selectors as account_selectors
from accounts import services as account_services
from messaging import selectors as chat_selectors
from messaging import services as chat_services
from moments import selectors as moments_selectors
from moments import services as moments_services
from payments import selectors as payment_selectors
from payments import services as payment_services

DEMO_USERS = [
    ("alice", "Alice", "alice@demo.superapp.test", "+8613800000001"),
    ("bob", "Bob", "bob@demo.superapp.test", "+8613800000002"),
    ("carol", "Carol", "carol@demo.superapp.test", "+8613800000003"),
]
GROUP_NAME = "Weekend hike"
WALLET_TOP_UP = 100_000  # 1,000.00 CNY in fen


class Command(BaseCommand):
    help = "Create the demo users, chats, Moments and wallets (password from DEMO_PASSWORD)."

    def handle(self, *args, **options):
        password = os.environ.get("DEMO_PASSWORD", "superapp-demo")
        pin = os.environ.get("DEMO_PIN", "123456")
        alice, bob, carol = users = [
            account_services.user_create_verified(
                handle=h, display_name=n, email=e, phone=p, password=password
            )
            for h, n, e, p in DEMO_USERS
        ]
        self._friends(users)
        self._chats(alice, bob, carol)
        self._moments(alice, bob, carol)
        self._wallets(users, pin)
        self.stdout.write("Demo logins (login / password):")
        for user in users:
            self.stdout.write(f"  {user.handle} / {password}   ({user.email}, {user.phone})")
        self.stdout.write(f"Payment PIN of every demo wallet: {pin}")

    def _friends(self, users):
        for i, a in enumerate(users):
            for b in users[i + 1 :]:
                if not account_selectors.is_contact(user_id=a.pk, other_id=b.pk):
                    outcome = account_services.friend_request_send(from_user=a, to_user_id=b.pk, note="demo")
                    if not outcome.became_friends:
                        account_services.friend_request_accept(user=b, request_id=outcome.request.pk)

    def _chats(self, alice, bob, carol):
        # client_msg_id makes each send idempotent: a second run returns the stored message.
        lines = [(alice, "demo-1", "Hi Bob! Are you coming on Saturday?"), (bob, "demo-2", "Yes! 8 am?")]
        for sender, cmid, text in lines:
            peer = bob if sender == alice else alice
            chat_services.message_send(
                sender_id=sender.pk, client_msg_id=cmid, kind="text", to_user_id=peer.pk, text=text
            )
        groups = [
            m for m in chat_selectors.conversation_list(user_id=alice.pk) if m.conversation.name == GROUP_NAME
        ]
        group = (
            groups[0].conversation
            if groups
            else chat_services.group_create(
                creator_id=alice.pk, name=GROUP_NAME, member_ids=[bob.pk, carol.pk]
            )
        )
        chat_services.message_send(sender_id=carol.pk, client_msg_id="demo-3", kind="text",
                                   conversation_id=group.pk, text="I'll bring the snacks.")  # fmt: skip

    def _moments(self, alice, bob, carol):
        if moments_selectors.album(viewer=bob, author_id=bob.pk).exists():
            return
        moments_services.post_publish(author=bob, text="Sunrise from the ridge. Worth the 5 am alarm.")
        post = moments_services.post_publish(author=carol, text="Trying the new noodle place downtown.")
        moments_services.like_add(user=alice, post_id=post.pk)
        moments_services.comment_create(user=bob, post_id=post.pk, text="Save me a seat next time!")

    def _wallets(self, users, pin):
        for user in users:
            if not payment_selectors.wallet_settings(user_id=user.pk).pin_hash:
                payment_services.pin_set(user_id=user.pk, pin=pin)
            if payment_selectors.wallet_balance(user_id=user.pk) == 0:
                payment_services.top_up_create(user_id=user.pk, amount=WALLET_TOP_UP)
