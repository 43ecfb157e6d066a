"""The live feed to staff: the session and transcript dicts its frames carry, and the broadcast."""

import asyncio
import logging
import time
from datetime import datetime

from channels.layers import get_channel_layer
from django.conf import settings
from django.urls import reverse

from operations import metrics

from . import background
from .models import AvatarSession, SessionStatus, TranscriptEntry

log = logging.getLogger(__name__)

GROUP = "dashboard"
# Sessions the feed shows as live: a minted token nobody started is not a conversation yet.
FEED_STATUSES = (SessionStatus.STARTED, SessionStatus.ACTIVE)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


_ADMIN_URL = None
# A URL reversed once for this id stands for every session's (the page puts the real id in).
ANY_SESSION = "00000000-0000-0000-0000-000000000000"


def _admin_url(pk) -> str:
    global _ADMIN_URL
    if _ADMIN_URL is None:  # reverse() once: this runs for every stored batch
        _ADMIN_URL = reverse("admin:sessions_app_avatarsession_change", args=[ANY_SESSION])
    return _ADMIN_URL.replace(ANY_SESSION, str(pk))


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
        # A line sent through live control, as staff read it ("Avatar (on behalf of staff member alice)").
        "sender": entry.sent_by and entry.speaker_words,
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


def publish(messages: list[dict]) -> None:
    """Queue frames of what was just stored for the feed (see `send`); they go out in order, those
    queued while a broadcast is on its way together in the next one."""
    _sender().publish(messages)


class _Sender:
    """Broadcasts the queued frames with one group_send. On Redis, where a send costs a round trip
    on every process, at most every INGEST_FEED_PERIOD seconds; in memory as soon as it can."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.outbox: list[dict] = []
        self.queued_at = 0.0  # wall time the oldest frame in the outbox was queued
        self.sent_at = -1e9  # loop time of the last broadcast
        self.task: asyncio.Task | None = None

    def publish(self, messages: list[dict]) -> None:
        if not self.outbox:
            self.queued_at = time.time()
        self.outbox.extend(feed_frames(messages))  # built now: each shows the session as it is now
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self.run(), context=background.detached_context())

    async def run(self) -> None:
        while self.outbox:
            wait = self.sent_at + settings.INGEST_FEED_PERIOD - self.loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            frames, self.outbox, queued_at = self.outbox, [], self.queued_at
            self.sent_at = self.loop.time()
            await group_send(frames)
            metrics.FEED_LAG_SECONDS.observe(max(0.0, time.time() - queued_at))


_sender = background.per_loop(_Sender)


async def group_send(frames: list[dict]) -> None:
    """One group message carrying `frames` (see send)."""
    try:
        await get_channel_layer().group_send(GROUP, {"type": "dashboard.messages", "messages": frames})
    except Exception:  # noqa: BLE001 - any channel-layer failure (Redis down, full) is only logged
        log.warning("dashboard broadcast of %d frames failed", len(frames), exc_info=True)
