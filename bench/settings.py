"""The site's settings with the bench's baselines added to its routes (servers.py runs Daphne on these)."""

from avatar_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
ASGI_APPLICATION = "bench.asgi.application"
