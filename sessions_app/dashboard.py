"""The dashboard's figures: today's and this week's sessions, minutes, latency and failures."""

import math
import statistics
from datetime import datetime, timedelta

from django.utils import timezone

from profiles import budgets
from profiles.models import AvatarProfile

from .feed import session_dict
from .models import AvatarSession, SessionStatus, TranscriptEntry

# End reasons that mean something went wrong, counted with the failed sessions.
FAILURE_REASONS = {"SERVER_ERROR", "NO_CREDITS", "AVATAR_DELETED", "ZOMBIE_SESSION_REAP", "ORPHANED"}


def _percentile(values: list[int], pct: float) -> int | None:
    """Nearest-rank percentile: a value that really occurred."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _of(profile: AvatarProfile | None):
    return AvatarSession.objects.filter(profile=profile) if profile else AvatarSession.objects.all()


def _period(start: datetime, end: datetime, profile: AvatarProfile | None = None) -> dict:
    sessions = _of(profile).conversations().filter(created_at__gte=start, created_at__lt=end)
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
    created = _of(profile).conversations().filter(created_at__gte=week_start).values_list("created_at", flat=True)
    counts = {}
    for moment in created:
        day = timezone.localtime(moment).date()
        counts[day] = counts.get(day, 0) + 1
    days = [(week_start + timedelta(days=n)).date() for n in range(7)]
    per_day = [{"day": day.isoformat(), "sessions": counts.get(day, 0)} for day in days]
    return {"today": _period(today, now, profile), "week": _period(week_start, now, profile), "per_day": per_day}


def recent_sessions(limit: int = 20, profile: AvatarProfile | None = None) -> list[dict]:
    return [session_dict(s) for s in _of(profile).conversations()[:limit]]


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
