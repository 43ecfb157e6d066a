"""LiveAvatar's catalogue (avatars, voices, contexts, voice agents), for picking them by name in the admin.

Fetched with the API key and kept in the cache for CATALOGUE_CACHE_SECONDS; staff refresh it at
will. Every list is [(id, name)], sorted by name.
"""

import asyncio

from django.conf import settings
from django.core.cache import cache

from sessions_app import liveavatar

CACHE_KEY = "profiles.liveavatar-catalogue"
KINDS = {
    "avatars": "list_avatars",
    "voices": "list_voices",
    "contexts": "list_contexts",
    "voice_agents": "list_voice_agents",
}
PAGE_SIZE = 100  # LiveAvatar's largest page
MAX_PAGES = 20


async def _all(list_page) -> list[tuple[str, str]]:
    items = []
    for page in range(1, MAX_PAGES + 1):
        data = await list_page(page=page, page_size=PAGE_SIZE)
        results = (data or {}).get("results") or []
        items += [(str(item["id"]), str(item.get("name") or item["id"])) for item in results if item.get("id")]
        if not data or not data.get("next") or not results:
            break
    return sorted(items, key=lambda pair: pair[1].lower())


async def fetch() -> dict[str, list[tuple[str, str]]]:
    """The whole catalogue from LiveAvatar, now. Raises LiveAvatarError."""
    client = liveavatar.get_client()
    lists = await asyncio.gather(*(_all(getattr(client, method)) for method in KINDS.values()))
    return dict(zip(KINDS, lists, strict=True))


async def load(refresh: bool = False) -> dict[str, list[tuple[str, str]]]:
    """The cached catalogue (fetched when missing, or when `refresh`). Raises LiveAvatarError."""
    found = None if refresh else await cache.aget(CACHE_KEY)
    if found is None:
        found = await fetch()
        await cache.aset(CACHE_KEY, found, settings.CATALOGUE_CACHE_SECONDS)
    return found
