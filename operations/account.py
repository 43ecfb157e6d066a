"""The LiveAvatar account as staff need to see it: credits left, minutes used, when credits run out,
429s lately and the last failure. Credits come from GET /v1/users/credits, read again only every
LIVEAVATAR_CREDITS_CACHE_SECONDS (per process): the dashboard, /metrics and readiness all ask.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from sessions_app import liveavatar
from sessions_app.models import IN_CONVERSATION, AvatarSession

from . import metrics
from .models import LiveAvatarFailure

log = logging.getLogger(__name__)

# LiveAvatar charges FULL-mode sessions 2 credits a minute; sandbox sessions are free (API.md §4.5).
CREDITS_PER_MINUTE = 2
# Failures older than this are dropped when the account is next summed up.
KEEP_FAILURES = timedelta(days=7)


@dataclass
class Credits:
    left: float | None  # None when LiveAvatar could not be asked
    error: str  # why not, in words
    read_at: float  # time.monotonic() of the reading


_last: Credits | None = None


async def credits(max_age: float | None = None, *, timeout: float | None = None) -> Credits:
    """Credits left, read from LiveAvatar unless the last reading is younger than `max_age` seconds."""
    global _last
    max_age = settings.LIVEAVATAR_CREDITS_CACHE_SECONDS if max_age is None else max_age
    if _last is not None and time.monotonic() - _last.read_at < max_age:
        return _last
    options = {"timeout": timeout, "max_retries": 0} if timeout else {}
    try:
        data = await liveavatar.get_client(**options).credits()
        left = float(data["credits_left"])
    except liveavatar.LiveAvatarError as exc:
        _last = Credits(None, exc.message, time.monotonic())
    except (TypeError, KeyError, ValueError):
        _last = Credits(None, "LiveAvatar's answer had no number of credits", time.monotonic())
    else:
        _last = Credits(left, "", time.monotonic())
        metrics.LIVEAVATAR_CREDITS.set(left)
    return _last


def _billed_minutes(since: datetime, now: datetime) -> float:
    """Minutes of non-sandbox conversation between `since` and `now` (sessions still live count to now)."""
    sessions = AvatarSession.objects.filter(started_at__isnull=False, is_sandbox=False).filter(
        Q(ended_at__isnull=True, status__in=IN_CONVERSATION) | Q(ended_at__gt=since)
    )
    seconds = 0.0
    for started, ended in sessions.values_list("started_at", "ended_at"):
        seconds += max(0.0, ((ended or now) - max(started, since)).total_seconds())
    return seconds / 60


def _usage(now: datetime) -> dict:
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    hour_ago = now - timedelta(hours=1)
    LiveAvatarFailure.objects.filter(at__lt=now - KEEP_FAILURES).delete()
    last = LiveAvatarFailure.objects.first()
    return {
        "minutes_today": round(_billed_minutes(today, now), 1),
        "minutes_last_day": _billed_minutes(now - timedelta(days=1), now),
        "rate_limited_last_hour": LiveAvatarFailure.objects.filter(at__gte=hour_ago, status=429).count(),
        "last_error": last.in_words() if last else "",
        "last_error_at": last.at.isoformat() if last else None,
    }


def _run_out(left: float | None, minutes_last_day: float, now: datetime) -> tuple[float | None, str | None]:
    """(hours until credits run out at the last day's pace, that moment), or (None, None) without a pace."""
    credits_per_hour = minutes_last_day * CREDITS_PER_MINUTE / 24
    if left is None or credits_per_hour <= 0:
        return None, None
    hours = max(0.0, left) / credits_per_hour
    return round(hours, 1), (now + timedelta(hours=hours)).isoformat()


def _warning(left: float | None, hours: float | None, error: str) -> str:
    if left is None:
        return f"Could not read the credits left from LiveAvatar: {error}"
    if left < settings.LIVEAVATAR_CREDITS_WARNING:
        minutes = max(0, int(left // CREDITS_PER_MINUTE))
        return f"Only {left:g} credits left (about {minutes} minutes of conversation). Top up the LiveAvatar account."
    if hours is not None and hours < settings.LIVEAVATAR_RUN_OUT_WARNING_HOURS:
        return f"At the pace of the last day, credits run out in about {hours:g} hours. Top up the LiveAvatar account."
    return ""


async def summary(now: datetime | None = None) -> dict:
    """The account box of the dashboard."""
    now = now or timezone.now()
    reading = await credits()
    usage = await database_sync_to_async(_usage)(now)
    hours, at = _run_out(reading.left, usage["minutes_last_day"], now)
    return {
        "credits_left": reading.left,
        "credits_error": reading.error,
        "minutes_today": usage["minutes_today"],
        "hours_left": hours,
        "runs_out_at": at,
        "warning": _warning(reading.left, hours, reading.error),
        "warning_below": settings.LIVEAVATAR_CREDITS_WARNING,
        "rate_limited_last_hour": usage["rate_limited_last_hour"],
        "last_error": usage["last_error"],
        "last_error_at": usage["last_error_at"],
    }
