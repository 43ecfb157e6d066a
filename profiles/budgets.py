"""Budgets: what a visitor, a profile and the whole site may still spend.

At the mint (`reserve`), under a lock on the profile's row (on every profile's row when the site
has its own cap), what is left is worked out and the new session row is stored in the same
transaction: the next mint, in whichever process, waits for the lock and then counts it. So many
visits at once never make more live sessions than a cap allows. A minted session holds its place
(and its minutes) as if it ran to its max_session_duration; one that is not started within
BUDGET_START_HOLD_SECONDS is voided to free it.

On the server (`stop_over_budget`, run by the reaper), a session still running past its own
max_session_duration, or past its profile's or visitor's minutes for the day, is stopped at
LiveAvatar with end reason BUDGET_EXCEEDED.
"""

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.formats import time_format

from sessions_app.models import LIVE_STATUSES, AvatarSession, EndReason, SessionStatus

from .models import AvatarProfile

log = logging.getLogger(__name__)

# What LiveAvatar is told when the server stops a session for its budget (SessionEndReasonEnum).
STOP_REASON = "MAX_DURATION_REACHED"
# LiveAvatar ends a session at its max_session_duration itself; the server steps in after this.
OVERRUN_GRACE_SECONDS = 30


class BudgetExceeded(Exception):
    """Nothing may be minted: `message` says why and when it resets; `retry_after` in seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.message = message
        self.retry_after = max(1, retry_after)


@dataclass
class Usage:
    """A profile's use of its budgets (and the site's live sessions), for staff and for the mint."""

    profile: AvatarProfile
    live: int
    site_live: int
    seconds_today: float  # used and reserved: live sessions count up to their max_session_duration
    used_seconds_today: float  # really used so far

    @property
    def minutes_today(self) -> float:
        return round(self.used_seconds_today / 60, 1)


def _day_start(now: datetime) -> datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


def _counted(sessions, day_start: datetime):
    """Sessions that use some of today: live ones, and those started that ended today."""
    return sessions.filter(Q(status__in=LIVE_STATUSES) | Q(started_at__isnull=False, ended_at__gte=day_start))


def _seconds(session: AvatarSession, now: datetime, day_start: datetime, *, reserved: bool) -> float:
    """Seconds of today the session used; with `reserved`, those a live one may still use as well."""
    start = session.started_at or now
    if session.status in LIVE_STATUSES:
        end = now
        if reserved:
            cap = session.max_session_duration or settings.LIVEAVATAR_MAX_SESSION_SECONDS
            end = max(now, start + timedelta(seconds=cap))
    elif session.started_at:
        end = session.ended_at or now
    else:
        return 0.0
    return max(0.0, (end - max(start, day_start)).total_seconds())


def _total(sessions, now, day_start, *, reserved: bool) -> float:
    return sum(_seconds(s, now, day_start, reserved=reserved) for s in _counted(sessions, day_start))


def _live(sessions) -> int:
    return sessions.live().count()


def usage(profile: AvatarProfile, now: datetime | None = None) -> Usage:
    now = now or timezone.now()
    day_start = _day_start(now)
    mine = AvatarSession.objects.filter(profile=profile)
    return Usage(
        profile=profile,
        live=_live(mine),
        site_live=_live(AvatarSession.objects.all()),
        seconds_today=_total(mine, now, day_start, reserved=True),
        used_seconds_today=_total(mine, now, day_start, reserved=False),
    )


# Refusals, in words.


def _in_words(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} hour{'s' * (hours != 1)}"] if hours else []
    if minutes:
        parts.append(f"{minutes} minute{'s' * (minutes != 1)}")
    return " and ".join(parts)


def _clock(moment: datetime) -> str:
    return f"{time_format(timezone.localtime(moment), 'H:i')} ({settings.TIME_ZONE})"


def _renewal(now: datetime) -> tuple[str, int]:
    midnight = _day_start(now) + timedelta(days=1)
    left = (midnight - now).total_seconds()
    return f"They are renewed at midnight ({settings.TIME_ZONE}), in {_in_words(left)}.", math.ceil(left)


def _place_frees(sessions, now: datetime) -> tuple[str, int]:
    """When the first of these live sessions must end at the latest."""
    ends = []
    for session in sessions.live():
        if session.status == SessionStatus.CREATED:
            ends.append(session.created_at + timedelta(seconds=settings.BUDGET_START_HOLD_SECONDS))
        else:
            cap = session.max_session_duration or settings.LIVEAVATAR_MAX_SESSION_SECONDS
            ends.append(session.started_at + timedelta(seconds=cap))
    first = max(min(ends, default=now), now)
    return (
        f"A place frees up as soon as one of them ends, by {_clock(first)} at the latest.",
        math.ceil((first - now).total_seconds()),
    )


def _minutes(n: int) -> str:
    return f"{n} minute{'s' * (n != 1)}"


# The mint.


def _void_unstarted(sessions, now: datetime) -> list[AvatarSession]:
    """Tokens minted but not started within the hold: expired here, to be stopped at LiveAvatar."""
    stale = list(sessions.select_for_update().expired(now, settings.BUDGET_START_HOLD_SECONDS))
    for session in stale:
        session.move_to(SessionStatus.EXPIRED, now, EndReason.NOT_STARTED_IN_TIME)
        session.save(update_fields=["status", "ended_at", "end_reason"])
    return stale


def _has_budget(profile: AvatarProfile) -> bool:
    limits = (profile.max_live_sessions, profile.minutes_per_day, profile.visitor_minutes_per_day)
    return any(limit is not None for limit in limits)


def _left(profile: AvatarProfile, visitor_key: str, now: datetime) -> int:
    """Seconds the next session may last, or BudgetExceeded saying why there are none."""
    day_start = _day_start(now)
    mine = AvatarSession.objects.filter(profile=profile)
    everyone = AvatarSession.objects.all()
    if settings.MAX_LIVE_SESSIONS and _live(everyone) >= settings.MAX_LIVE_SESSIONS:
        words, wait = _place_frees(everyone, now)
        raise BudgetExceeded(
            f"The site is already holding {settings.MAX_LIVE_SESSIONS} conversations, as many as it may at once. "
            + words,
            wait,
        )
    if profile.max_live_sessions is not None and _live(mine) >= profile.max_live_sessions:
        words, wait = _place_frees(mine, now)
        raise BudgetExceeded(
            f"This avatar is already in {profile.max_live_sessions} "
            f"conversation{'s' * (profile.max_live_sessions != 1)}, as many as it may hold at once. " + words,
            wait,
        )
    left = [profile.max_session_duration]
    if profile.minutes_per_day is not None:
        left.append(profile.minutes_per_day * 60 - _total(mine, now, day_start, reserved=True))
    if profile.minutes_per_day is not None and min(left) < settings.BUDGET_MIN_SESSION_SECONDS:
        words, wait = _renewal(now)
        raise BudgetExceeded(
            f"This avatar has used its {_minutes(profile.minutes_per_day)} of conversation for today. " + words,
            wait,
        )
    if profile.visitor_minutes_per_day is not None:
        theirs = mine.filter(visitor_key=visitor_key)
        left.append(profile.visitor_minutes_per_day * 60 - _total(theirs, now, day_start, reserved=True))
        if min(left) < settings.BUDGET_MIN_SESSION_SECONDS:
            words, wait = _renewal(now)
            raise BudgetExceeded(
                f"You have used your {_minutes(profile.visitor_minutes_per_day)} of conversation for today. " + words,
                wait,
            )
    return int(min(left))


def reserve(session: AvatarSession, now: datetime | None = None) -> list[AvatarSession]:
    """Store the new (unsaved) session if its profile and the site have room for it.

    Its max_session_duration (and its token configuration's) becomes the smallest of what is left.
    Returns the unstarted sessions voided to make room, which the caller stops at LiveAvatar.
    Raises BudgetExceeded, storing nothing, when nothing is left.
    """
    now = now or timezone.now()
    profile = session.profile
    if not settings.MAX_LIVE_SESSIONS and not _has_budget(profile):
        session.max_session_duration = session.config["max_session_duration"] = min(
            profile.max_session_duration, session.max_session_duration or profile.max_session_duration
        )
        session.save()  # nothing to count: no lock either
        return []
    with transaction.atomic():
        locks = AvatarProfile.objects.select_for_update().order_by("pk")  # always in one order: no deadlock
        list(locks if settings.MAX_LIVE_SESSIONS else locks.filter(pk=profile.pk))
        voided = []
        if settings.MAX_LIVE_SESSIONS:
            voided = _void_unstarted(AvatarSession.objects.all(), now)
        elif _has_budget(profile):
            voided = _void_unstarted(AvatarSession.objects.filter(profile=profile), now)
        seconds = _left(profile, session.visitor_key, now)
        if session.max_session_duration:
            seconds = min(seconds, session.max_session_duration)
        session.max_session_duration = session.config["max_session_duration"] = seconds
        session.save()
    return voided


# The server's side.


def over_budget(now: datetime | None = None) -> list[AvatarSession]:
    """Running sessions past their own max_session_duration, or past their profile's or visitor's minutes."""
    now = now or timezone.now()
    day_start = _day_start(now)
    running = list(AvatarSession.objects.in_feed().filter(started_at__isnull=False).select_related("profile"))
    used: dict = {}

    def spent(key, sessions) -> float:
        if key not in used:
            used[key] = _total(sessions, now, day_start, reserved=False)
        return used[key]

    found = []
    for session in running:
        cap = session.max_session_duration or settings.LIVEAVATAR_MAX_SESSION_SECONDS
        if (now - session.started_at).total_seconds() > cap + OVERRUN_GRACE_SECONDS:
            found.append(session)
            continue
        profile = session.profile
        if profile is None:
            continue
        mine = AvatarSession.objects.filter(profile=profile)
        if profile.minutes_per_day is not None and spent(profile.pk, mine) >= profile.minutes_per_day * 60:
            found.append(session)
        elif profile.visitor_minutes_per_day is not None and (
            spent((profile.pk, session.visitor_key), mine.filter(visitor_key=session.visitor_key))
            >= profile.visitor_minutes_per_day * 60
        ):
            found.append(session)
    return found
