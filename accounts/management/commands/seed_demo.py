"""``manage.py seed_demo``: demo users alice, bob and carol, friends of each other. Idempotent."""

import os

from django.core.management.base import BaseCommand

from accounts import selectors, services

DEMO_USERS = [
    ("alice", "Alice", "alice@demo.superapp.test", "+8613800000001"),
    ("bob", "Bob", "bob@demo.superapp.test", "+8613800000002"),
    ("carol", "Carol", "carol@demo.superapp.test", "+8613800000003"),
]


class Command(BaseCommand):
    help = "Create the demo users (password from DEMO_PASSWORD, default superapp-demo)."

    def handle(self, *args, **options):
        password = os.environ.get("DEMO_PASSWORD", "superapp-demo")
        users = [
            services.user_create_verified(handle=h, display_name=n, email=e, phone=p, password=password)
            for h, n, e, p in DEMO_USERS
        ]
        for i, a in enumerate(users):
            for b in users[i + 1 :]:
                if not selectors.is_contact(user_id=a.pk, other_id=b.pk):
                    outcome = services.friend_request_send(from_user=a, to_user_id=b.pk, note="demo")
                    if not outcome.became_friends:
                        services.friend_request_accept(user=b, request_id=outcome.request.pk)
        self.stdout.write("Demo logins (login / password):")
        for user in users:
            self.stdout.write(f"  {user.handle} / {password}   ({user.email}, {user.phone})")
