"""Settings of the anchor server: the project's settings, with the anchor's URL map only."""

from superapp.settings import *  # noqa: F403

ROOT_URLCONF = "bench.anchor_urls"
