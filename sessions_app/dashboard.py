"""What staff see live: the session and transcript dicts of the feed, the broadcast, and the figures."""

import logging
import math
import statistics
from datetime import datetime, timedelta

from channels.layers import get_channel_layer
from django.urls import reverse
from django.utils import timezone

from profiles import budgets
from profiles.models import AvatarProfile

from .models import AvatarSession, SessionStatus, TranscriptEntry

log = logging.getLogger(__name__)

GROUP = "dashboard"
# Sessions the feed shows as live: a minted token nobody started is not a conversation yet.
FEED_STATUSES = (SessionStatus.STARTED, SessionStatus.ACTIVE)
# End reasons that mean something went wrong, counted with the failed sessions.
FAILURE_REASONS = {"SERVER_ERROR", "NO_CREDITS", "AVATAR_DELETED", "ZOMBIE_SESSION_REAP", "ORPHANED"}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


_ADMIN_URL = None


def _admin_url(pk) -> str:
    global _ADMIN_URL
    if _ADMIN_URL is None:  # reverse() once: this runs for every stored batch
        _ADMIN_URL = reverse("admin:sessions_app_avatarsession_change", args=["00000000-0000-0000-0000-000000000000"])
    return _ADMIN_URL.replace("00000000-0000-0000-0000-000000000000", str(pk))


METRICS = ("turn_count", "interruption_count", "median_latency_ms")  # what a live card shows of a session


def session_dict(session: AvatarSession) -> dict:
    return {
        "id": str(session.id),
        "status": session.status,
        "end_reason": session.end_reason,
        "avatar_id": session.avatar_id,
        "profile_id": session.profile_id,
        "created_at": _iso(session.created_at),
        "started_at": _iso(session.started_at),
        "ended_at": _iso(session.ended_at),
        "duration_seconds": session.duration_seconds,
        "turn_count": session.turn_count,
        "interruption_count": session.interruption_count,
        "median_latency_ms": session.median_latency_ms,
        "admin_url": _admin_url(session.pk),
    }


def entry_dict(entry: TranscriptEntry) -> dict:
    return {
        "position": entry.position,
        "speaker": entry.speaker,
        "text": entry.text,
        "interrupted": entry.interrupted,
        "partial": entry.from_chunks,
    }


def snapshot() -> list[dict]:
    """Live sessions with their transcripts so far (sync: call through database_sync_to_async)."""
    sessions = AvatarSession.objects.filter(status__in=FEED_STATUSES).prefetch_related("transcript")[:100]
    return [{**session_dict(s), "transcript": [entry_dict(e) for e in s.transcript.all()]} for s in sessions]


async def broadcast(session: AvatarSession, entries: list[TranscriptEntry] = ()) -> None:
    """Tell the staff feed what changed in one session (server-side stop, reconcile, expiry)."""
    await send(
        [
            {"type": "session", "session": session},
            *({"type": "transcript", "session_id": str(session.id), "entry": entry_dict(e)} for e in entries),
        ]
    )


async def send(messages: list[dict]) -> None:
    """One channel-layer message to the feed carrying many frames (DashboardConsumer sends them one by one).

    A "session" frame may carry the AvatarSession itself; it becomes its dict here. The rows are
    already committed: a channel layer that is down or full costs the live view, not the data.
    """
    await group_send(feed_frames(messages))


def feed_frames(messages: list[dict]) -> list[dict]:
    """The feed frames of `messages` (a session row becomes its dict, once per session)."""
    dicts: dict = {}
    result = []
    for message in messages:
        session = message.get("session")
        if isinstance(session, AvatarSession):
            if session.pk not in dicts:
                dicts[session.pk] = session_dict(session)
            message = {**message, "session": dicts[session.pk]}
        result.append(message)
    return result


async def group_send(frames: list[dict]) -> None:
    """One group message carrying `frames` (see send)."""
    try:
        await get_channel_layer().group_send(GROUP, {"type": "dashboard.messages", "messages": frames})
    except Exception:  # noqa: BLE001 - any channel-layer failure (Redis down, full) is only logged
        log.warning("dashboard broadcast of %d frames failed", len(frames), exc_info=True)


def _percentile(values: list[int], pct: float) -> int | None:
    """Nearest-rank percentile: a value that really occurred."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _of(profile: AvatarProfile | None):
    return AvatarSession.objects.filter(profile=profile) if profile else AvatarSession.objects.all()


def _period(start: datetime, end: datetime, profile: AvatarProfile | None = None) -> dict:
    sessions = (
        _of(profile)
        .filter(created_at__gte=start, created_at__lt=end)
        .exclude(status__in=(SessionStatus.CREATED, SessionStatus.EXPIRED))
    )
    rows = list(sessions.values_list("status", "end_reason", "started_at", "ended_at", "interruption_count"))
    latencies = list(
        TranscriptEntry.objects.filter(session__in=sessions, latency_ms__isnull=False).values_list(
            "latency_ms", flat=True
        )
    )
    seconds = sum(((ended or end) - started).total_seconds() for _, _, started, ended, _ in rows if started)
    failures: dict[str, int] = {}
    for status, reason, *_ in rows:
        if status == SessionStatus.FAILED or reason in FAILURE_REASONS:
            failures[reason or "UNKNOWN"] = failures.get(reason or "UNKNOWN", 0) + 1
    return {
        "sessions": len(rows),
        "minutes": round(max(0.0, seconds) / 60, 1),
        "median_latency_ms": round(statistics.median(latencies)) if latencies else None,
        "p95_latency_ms": _percentile(latencies, 95),
        "interruptions": sum(row[4] for row in rows),
        "failures": dict(sorted(failures.items(), key=lambda kv: -kv[1])),
    }


def figures(now: datetime | None = None, profile: AvatarProfile | None = None) -> dict:
    """Today's and this week's (the last 7 days, today included) figures, plus sessions per day; of
    one profile's sessions, or of all."""
    now = now or timezone.now()
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    week_start = today - timedelta(days=6)
    created = (
        _of(profile)
        .filter(created_at__gte=week_start)
        .exclude(status__in=(SessionStatus.CREATED, SessionStatus.EXPIRED))
        .values_list("created_at", flat=True)
    )
    counts = {}
    for moment in created:
        day = timezone.localtime(moment).date()
        counts[day] = counts.get(day, 0) + 1
    days = [(week_start + timedelta(days=n)).date() for n in range(7)]
    per_day = [{"day": day.isoformat(), "sessions": counts.get(day, 0)} for day in days]
    return {"today": _period(today, now, profile), "week": _period(week_start, now, profile), "per_day": per_day}


def recent_sessions(limit: int = 20, profile: AvatarProfile | None = None) -> list[dict]:
    return [session_dict(s) for s in _of(profile).exclude(status=SessionStatus.CREATED)[:limit]]


def budget_usage() -> list[dict]:
    """Each profile's use of its budgets today (a limit of None is no limit)."""
    rows = []
    for profile in AvatarProfile.objects.all():
        used = budgets.usage(profile)
        rows.append(
            {
                "id": profile.pk,
                "slug": profile.slug,
                "name": profile.name,
                "active": profile.active,
                "live": used.live,
                "max_live_sessions": profile.max_live_sessions,
                "minutes_today": used.minutes_today,
                "minutes_per_day": profile.minutes_per_day,
                "visitor_minutes_per_day": profile.visitor_minutes_per_day,
            }
        )
    return rows
