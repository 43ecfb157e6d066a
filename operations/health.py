"""Readiness probes: each says whether its part answers and, in words, what it is and what failed.

Whatever the failure (refused, timeout, misconfigured), the part is down. No probe shows a password
or a key: a Redis or database address is shown as host and port only.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from . import account

# Seconds each probe may take: a load balancer asks often and must get an answer quickly.
PROBE_TIMEOUT = 2.0
# A LiveAvatar reading this recent (seconds) is good enough: probes come every few seconds.
LIVEAVATAR_MAX_AGE = 15.0


def _problem(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def database() -> tuple[bool, str]:
    name = f"{connection.display_name} database"
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001
        return False, f"{name} unreachable ({_problem(exc)})"
    return True, name


def _layer_name() -> str:
    if not settings.REDIS_URL:
        return "in-memory channel layer"
    address = urlsplit(settings.REDIS_URL)
    return f"Redis at {address.hostname}:{address.port or 6379}"


async def _round_trip() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping"})
    await layer.receive(channel)


async def channel_layer() -> tuple[bool, str]:
    name = _layer_name()
    try:
        await asyncio.wait_for(_round_trip(), PROBE_TIMEOUT)
    except Exception as exc:  # noqa: BLE001
        return False, f"{name} unreachable ({_problem(exc) if not isinstance(exc, TimeoutError) else 'no answer'})"
    return True, name


async def liveavatar() -> tuple[bool, str]:
    name = "LiveAvatar emulator" if settings.LIVEAVATAR_EMULATOR else "LiveAvatar"
    reading = await account.credits(max_age=LIVEAVATAR_MAX_AGE, timeout=PROBE_TIMEOUT)
    if reading.left is None:
        return False, f"{name} unreachable ({reading.error})"
    return True, name
