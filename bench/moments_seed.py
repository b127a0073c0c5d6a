"""The Moments bench data, written once into the bench database: ``python -m bench.moments_seed``.

Run by ``bench.moments_feed`` in a child process with the bench's production settings. Idempotent:
a database that has the data already is left alone.

* ``mviewer``: 500 friends (``mf0001``..``mf0500``), each with 40 posts over the last 60 days,
  i.e. 20,000 posts in the database, every one in ``mviewer``'s timeline. A third of the posts have
  1 to 3 images; every post has 3 likes and 2 comments by the author's neighbours, who are also
  ``mviewer``'s friends (so the viewer sees them all: the most work for the read path).
* ``mpub500``: 500 friends (the ``mf`` users); ``mpub5000``: 5,000 friends (``mf`` and
  ``mg0001``..``mg4500``): the authors whose posts are timed into every friend's timeline.

Every user's password is ``superapp-demo`` (as the demo users').
"""

from __future__ import annotations

import os
import random
import sys
import time
from datetime import timedelta

VIEWER_FRIENDS = 500
POSTS_PER_FRIEND = 40
EXTRA_FRIENDS = 4500
RING = 3  # each mf user is friends with the next 3 (and previous 3) on a ring


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "superapp.settings")
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.db import transaction
    from django.utils import timezone

    from accounts import selectors as account_selectors
    from accounts.models import Friendship, User
    from moments import feed_cache
    from moments.models import Comment, Like, Media, Post, Timeline

    # Rows are written here outside the services (no version is bumped), and this Redis db may
    # hold pages of an earlier bench database with the same ids: start the feed cache empty.
    feed_cache.clear()

    if User.objects.filter(handle="mviewer").exists():
        viewer = User.objects.get(handle="mviewer")
        print(
            f"moments bench data present: {Post.objects.count()} posts in the database, "
            f"{len(account_selectors.friend_ids(user_id=viewer.pk))} friends of mviewer"
        )
        return 0

    started = time.monotonic()
    rng = random.Random(42)
    password = make_password("superapp-demo")

    def user(handle: str) -> User:
        return User(handle=handle, email=f"{handle}@bench.invalid", display_name=handle.capitalize(),
                    password=password, is_verified=True)  # fmt: skip

    with transaction.atomic():
        singles = User.objects.bulk_create([user("mviewer"), user("mpub500"), user("mpub5000")])
        viewer, pub500, pub5000 = singles
        mf = User.objects.bulk_create(
            [user(f"mf{i:04d}") for i in range(1, VIEWER_FRIENDS + 1)], batch_size=2000
        )
        mg = User.objects.bulk_create(
            [user(f"mg{i:04d}") for i in range(1, EXTRA_FRIENDS + 1)], batch_size=2000
        )

        pairs = set()
        for f in mf:
            pairs |= {(viewer.pk, f.pk), (pub500.pk, f.pk), (pub5000.pk, f.pk)}
        for g in mg:
            pairs.add((pub5000.pk, g.pk))
        for i, f in enumerate(mf):
            for step in range(1, RING + 1):
                pairs.add((f.pk, mf[(i + step) % len(mf)].pk))
        rows = [Friendship(user_id=a, friend_id=b) for a, b in pairs] + [
            Friendship(user_id=b, friend_id=a) for a, b in pairs
        ]
        Friendship.objects.bulk_create(rows, batch_size=5000, ignore_conflicts=True)

        now = timezone.now()
        posts = []
        for author in mf:
            for _ in range(POSTS_PER_FRIEND):
                created = now - timedelta(seconds=rng.randint(60, 60 * 24 * 3600))
                kind = Post.Kind.IMAGES if rng.random() < 1 / 3 else Post.Kind.TEXT
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30)))
                posts.append(
                    Post(author=author, kind=kind, text=text, created_at=created, fanned_out_at=created)
                )
        posts = Post.objects.bulk_create(posts, batch_size=5000)
        index = {f.pk: i for i, f in enumerate(mf)}

        media, timeline, likes, comments = [], [], [], []
        for post in posts:
            i = index[post.author_id]
            neighbours = [mf[(i + s) % len(mf)] for s in range(-RING, RING + 1) if s]
            if post.kind == Post.Kind.IMAGES:
                for position in range(rng.randint(1, 3)):
                    name = f"moments/bench/{post.pk}-{position}"
                    media.append(Media(owner_id=post.author_id, post=post, position=position, kind="image",
                                       file=f"{name}.full.jpg", thumb=f"{name}.thumb.jpg", width=1440,
                                       height=1080, size=200_000, content_type="image/jpeg"))  # fmt: skip
            readers = {viewer.pk, pub500.pk, pub5000.pk, post.author_id, *(n.pk for n in neighbours)}
            timeline += [
                Timeline(user_id=r, post=post, author_id=post.author_id, created=post.created_at)
                for r in readers
            ]
            likes += [Like(post=post, user=n) for n in neighbours[RING : RING + 3]]
            comments += [
                Comment(post=post, author=n, text=" ".join(rng.choice(WORDS) for _ in range(8)))
                for n in neighbours[RING : RING + 2]
            ]
        Media.objects.bulk_create(media, batch_size=5000)
        Timeline.objects.bulk_create(timeline, batch_size=5000)
        Like.objects.bulk_create(likes, batch_size=5000)
        Comment.objects.bulk_create(comments, batch_size=5000)
    from django.db import connection

    with connection.cursor() as cursor:
        # As autovacuum leaves tables in production: statistics, and the visibility map (which
        # index-only scans need).
        cursor.execute("VACUUM ANALYZE")
    print(
        f"moments bench data written in {time.monotonic() - started:.0f}s: {len(posts)} posts, "
        f"{len(timeline)} timeline rows, {len(likes)} likes, {len(comments)} comments, {len(media)} images"
    )
    return 0


WORDS = [
    "sunset", "coffee", "weekend", "hiking", "friends", "dinner", "travel", "beach", "city", "night",
    "rain", "music", "family", "cat", "dog", "book", "movie", "train", "mountain", "lake", "garden",
    "morning", "work", "project", "birthday", "party", "noodles", "tea", "spring",
]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
