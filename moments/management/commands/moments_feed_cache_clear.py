"""``manage.py moments_feed_cache_clear``: end every cached home-feed first page at once.

Run it after restoring the database or Redis, after a Redis failover, after rows were written
outside the services, and before turning ``MOMENTS_FEED_CACHE`` back on (docs/moments.md,
"Runbook"). Safe at any time: the cost is one miss per viewer.
"""

from django.core.management.base import BaseCommand, CommandError

from moments import feed_cache


class Command(BaseCommand):
    help = "End every cached Moments home-feed first page (bumps the cache's generation)."

    def handle(self, *args, **options):
        try:
            generation = feed_cache.clear()
        except Exception as exc:  # Redis unreachable: say so, exit 1
            raise CommandError(f"could not reach the feed cache's Redis: {exc}") from exc
        if generation is None:
            self.stdout.write("MOMENTS_FEED_CACHE_URL is not set: there is no feed cache to clear")
            return
        self.stdout.write(self.style.SUCCESS(f"feed cache cleared (generation {generation})"))
