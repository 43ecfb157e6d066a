"""What moves a session's status, and what the server does on its own: stop, reconcile, reap orphans.

Status moves created → started → active → ended | failed (AvatarSession.move_to); a token never
started becomes expired. Forwarded events drive it (ingest calls `apply_events`), the server drives it
when it stops a session itself.
"""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import transaction
from django.utils import timezone

from operations import metrics
from privacy.redaction import policy_for, redact
from profiles import budgets

from . import background, feed, liveavatar, signals, transcript
from .models import (
    AvatarSession,
    EndReason,
    SessionStatus,
    Speaker,
    TranscriptEntry,
    TranscriptOrigin,
)
from .transcript_rows import ENTRY_FIELDS, write_entries

log = logging.getLogger(__name__)

ACTIVE_CLIENT_EVENTS = {"client.connected", "client.participants_ready", "client.media_ready"}


def target_of(item: dict) -> tuple[str, str, str] | None:
    """(status, end reason, error) a forwarded event asks for, or None when it changes nothing."""
    event = item["event"]
    kind = event["event_type"]
    if kind in ("session.stopped", "session_stopped"):
        return SessionStatus.ENDED, str(event.get("end_reason") or event.get("stop_reason") or "UNKNOWN"), ""
    if kind == "client.stopped":
        return SessionStatus.ENDED, str(event.get("reason") or EndReason.USER_CLOSED), ""
    if kind == "client.error" and event.get("stage") == "start":
        return SessionStatus.FAILED, EndReason.START_FAILED, str(event.get("message") or "")[:1000]
    if kind == "client.started":
        return SessionStatus.STARTED, "", ""
    if kind in ACTIVE_CLIENT_EVENTS or item["source"] == "server":
        return SessionStatus.ACTIVE, "", ""
    return None


def apply_events(session: AvatarSession, items: list[dict], received_at: datetime) -> None:
    """Apply newly stored events (in seq order) to the unsaved session.

    Times come from the server's clock when the events arrived, never from the page's `ts`.
    """
    for item in sorted(items, key=lambda i: i["seq"]):
        target = target_of(item)
        if target:
            session.move_to(target[0], received_at, *target[1:])


def _claim_end(session_id, end_reason: str, ended_by: str) -> None:
    AvatarSession.objects.live().filter(pk=session_id).update(end_reason=end_reason, ended_by=ended_by)


def _drop_claim(session_id, end_reason: str) -> None:
    AvatarSession.objects.live().filter(pk=session_id, end_reason=end_reason).update(end_reason="", ended_by="")


def _end(session_id, reason: str, status: str = SessionStatus.ENDED) -> AvatarSession:
    with transaction.atomic():
        session = AvatarSession.objects.select_for_update().get(pk=session_id)
        session.move_to(status, timezone.now(), reason)
        session.start_token = ""  # a token never used for a start is of no use any more
        session.save()
    return session


async def stop_session(
    session: AvatarSession, reason: str = "USER_CLOSED", end_reason: str | None = None, *, ended_by: str = ""
) -> AvatarSession:
    """Stop the session at LiveAvatar (API key + session id) and mark it ended.

    `reason` is what LiveAvatar is told (SessionEndReasonEnum); `end_reason` what we store, when it
    says more (an EndReason: STAFF_ENDED, ORPHANED, BUDGET_EXCEEDED...); `ended_by` who asked
    ("staff:<username>", "api:<key name>"). A 404 means LiveAvatar has already let it go, which is
    what we want. The page hears the reason when it forwards the stop's events (consumers).
    """
    stored_reason = end_reason or reason
    # Claimed before LiveAvatar is asked: the page may forward LiveAvatar's session.stopped (which
    # says only what LiveAvatar was told) before the stop call returns.
    await database_sync_to_async(_claim_end)(session.pk, stored_reason, ended_by)
    if session.liveavatar_session_id:
        try:
            await liveavatar.get_client().stop(session_id=session.liveavatar_session_id, reason=reason)
        except liveavatar.LiveAvatarError as exc:
            if exc.status != 404:
                await database_sync_to_async(_drop_claim)(session.pk, stored_reason)
                raise
    session = await database_sync_to_async(_end)(session.pk, stored_reason)
    await feed.broadcast(session)
    return session


# Server-started sessions (LIVEAVATAR_SESSION_START = "server"): the page asks, the server calls LiveAvatar.

# What the page gets of LiveAvatar's start answer: the room, and how long the session may last.
PAGE_START_FIELDS = ("livekit_url", "livekit_client_token", "max_session_duration")


class NotStartable(Exception):
    """The session holds no start token: it was started already, or the page starts it itself."""


async def start_for_page(session: AvatarSession) -> dict:
    """Start the session at LiveAvatar with the token kept since minting, then forget the token;
    returns only what the page needs to join the room. Raises NotStartable, or LiveAvatarError."""
    if not session.start_token:
        raise NotStartable()
    started = await liveavatar.get_client().start(session.start_token)
    # Used once: keep-alive and stop use the API key and the session id from here on.
    await AvatarSession.objects.filter(pk=session.pk).aupdate(start_token="")
    return {name: (started or {}).get(name) for name in PAGE_START_FIELDS}


async def keep_alive_for_page(session: AvatarSession) -> None:
    await liveavatar.get_client().keep_alive(session_id=session.liveavatar_session_id)


async def stop_for_page(session: AvatarSession, reason: str) -> None:
    """The page's stop, made with the API key: only LiveAvatar is told; the page's own events end
    the session here, exactly as when it stops the session itself. Already gone (404) is fine."""
    try:
        await liveavatar.get_client().stop(session_id=session.liveavatar_session_id, reason=reason)
    except liveavatar.LiveAvatarError as exc:
        if exc.status != 404:
            raise


def _utterance_time(value) -> datetime | None:
    # Units are undocumented (API.md §6.10): seconds, or milliseconds when the number is that large.
    if not isinstance(value, (int, float)):
        return None
    return datetime.fromtimestamp(value / 1000 if value > 10**11 else value, tz=UTC)


def _same_utterance(entry: dict, speaker: str, words: str) -> bool:
    """LiveAvatar's record of an utterance matches ours; of a turn cut short it may hold what was said,
    what was meant, or something in between."""
    if entry["speaker"] != speaker:
        return False
    said = transcript.normalized(entry["text"])
    if words == said:
        return True
    meant = transcript.normalized(entry["intended_text"]) or said
    return entry["interrupted"] and (meant.startswith(words) or words.startswith(said) or said.startswith(words))


def add_missing_utterances(session_id, utterances: list[dict]) -> tuple[int, list[TranscriptEntry]]:
    """(how many utterances were missing, transcript rows created or changed to make room for them).

    A missing utterance goes after the entry that matched LiveAvatar's previous utterance, and after
    every entry that started before it: the transcript stays in time order. LiveAvatar's timestamps
    are whole seconds (the emulator's, at least), so one earlier than the entry it follows is that
    entry's second.
    """
    with transaction.atomic():
        session = AvatarSession.objects.select_for_update().get(pk=session_id)
        merged = [_as_dict(e) for e in session.transcript.all()]
        matched = [False] * len(merged)  # each forwarded entry accounts for one LiveAvatar utterance
        anchor, added = -1, 0
        policy = policy_for(session)
        for utterance in utterances:
            # Redacted as ours were, both to compare them and before storing any.
            said = redact((utterance.get("transcript") or "").strip(), policy)[0]
            speaker, words = utterance.get("role"), transcript.normalized(said)
            if speaker not in Speaker.values or not words:
                continue
            same = next(
                (i for i, e in enumerate(merged) if not matched[i] and _same_utterance(e, speaker, words)),
                None,
            )
            if same is not None:
                matched[same], anchor = True, same
                continue
            at = _utterance_time(utterance.get("absolute_timestamp"))
            before = merged[anchor]["started_at"] if anchor >= 0 else None
            if at is None or (before and at < before):
                at = before
            anchor += 1
            while at and anchor < len(merged) and merged[anchor]["started_at"] and merged[anchor]["started_at"] <= at:
                anchor += 1
            merged.insert(
                anchor,
                {
                    **dict.fromkeys(ENTRY_FIELDS),
                    "speaker": speaker,
                    "text": said,
                    "intended_text": "",
                    "started_at": at,
                    "interrupted": False,
                    "unanswered": False,
                    "from_chunks": False,
                    "origin": TranscriptOrigin.LIVEAVATAR,
                    "sent_by": "",
                },
            )
            matched.insert(anchor, True)
            added += 1
        changed = []
        if added:
            changed = write_entries(session, merged)
            signals.transcript_reconciled.send(sender=AvatarSession, session=session)
        session.reconciled_at = timezone.now()
        session.save()
    return added, changed


def _as_dict(entry: TranscriptEntry) -> dict:
    return {field: getattr(entry, field) for field in ENTRY_FIELDS}


async def reconcile(session: AvatarSession) -> int:
    """After the end: add the utterances LiveAvatar heard that the browser never forwarded.

    Returns how many were added. The session is marked reconciled even when none were missing.
    """
    data = await liveavatar.get_client().transcript(session.liveavatar_session_id)
    utterances = (data or {}).get("transcript_data") or []
    added, changed = await database_sync_to_async(add_missing_utterances)(session.pk, utterances)
    if changed:
        await feed.broadcast(await AvatarSession.objects.aget(pk=session.pk), changed)
    return added


def _due(now: datetime) -> tuple[list, list, list]:
    orphans = list(AvatarSession.objects.orphaned(now))
    expired = list(AvatarSession.objects.expired(now))
    unreconciled = list(
        AvatarSession.objects.filter(
            status=SessionStatus.ENDED, reconciled_at__isnull=True, liveavatar_session_id__isnull=False
        )
    )
    return orphans, expired, unreconciled


def _purge(now: datetime) -> int:
    """Delete visits that never became a conversation, a day (PURGE_EXPIRED_AFTER_SECONDS) after they
    expired: they are no evidence of anything but a page view."""
    cutoff = now - timedelta(seconds=settings.PURGE_EXPIRED_AFTER_SECONDS)
    _, deleted = AvatarSession.objects.filter(status=SessionStatus.EXPIRED, ended_at__lt=cutoff).delete()
    return deleted.get(AvatarSession._meta.label, 0)


async def reap_orphans(now: datetime | None = None) -> dict:
    """One pass: stop sessions over budget and orphans, expire tokens never started, purge them a day
    later, reconcile ended sessions.

    Each session is handled on its own: LiveAvatar failing for one leaves it for the next pass.
    """
    now = now or timezone.now()
    counts = {"over_budget": 0, "orphaned": 0, "expired": 0, "purged": 0, "reconciled": 0, "failed": 0}
    for session in await database_sync_to_async(budgets.over_budget)(now):
        try:
            await stop_session(session, reason=budgets.STOP_REASON, end_reason=EndReason.BUDGET_EXCEEDED)
            counts["over_budget"] += 1
        except liveavatar.LiveAvatarError as exc:
            log.warning("could not stop session %s over its budget: %s", session.id, exc)
            counts["failed"] += 1
    orphans, expired, unreconciled = await database_sync_to_async(_due)(now)
    for session in orphans:
        try:
            unreconciled.append(await stop_session(session, reason="USER_DISCONNECTED", end_reason=EndReason.ORPHANED))
            counts["orphaned"] += 1
        except liveavatar.LiveAvatarError as exc:
            log.warning("could not stop orphaned session %s: %s", session.id, exc)
            counts["failed"] += 1
    for session in expired:
        # Not broadcast: a visit that never started is on no staff screen.
        await database_sync_to_async(_end)(session.pk, "", SessionStatus.EXPIRED)
        counts["expired"] += 1
    counts["purged"] = await database_sync_to_async(_purge)(now)
    for session in unreconciled:
        try:
            await reconcile(session)
            counts["reconciled"] += 1
        except liveavatar.LiveAvatarError as exc:
            log.warning("could not reconcile session %s: %s", session.id, exc)
            counts["failed"] += 1
    for action, count in counts.items():
        metrics.REAPER_ACTIONS.labels(action).inc(count)
    return counts


# The in-process reaper of `make run`: one task per server process, started by the first request
# Daphne serves (Daphne sends no ASGI lifespan events). Production schedulers may use the
# reap_orphans management command instead and set REAPER_INTERVAL_SECONDS=0.
_reaper: asyncio.Task | None = None


async def _reap_forever(interval: int) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            counts = await reap_orphans()
            if any(counts.values()):
                log.info("reaper: %s", counts)
        except Exception:  # noqa: BLE001 - a database hiccup must not end the loop
            log.exception("reaper pass failed")


async def start_reaper(sender, **kwargs) -> None:
    """request_started receiver (connected in SessionsAppConfig.ready): the first request of an ASGI
    server process starts its reaper loop."""
    global _reaper
    # Only a real ASGI server starts it (the test client's handler is not an ASGIHandler).
    if not issubclass(sender, ASGIHandler) or _reaper is not None or settings.REAPER_INTERVAL_SECONDS <= 0:
        return
    _reaper = asyncio.get_running_loop().create_task(
        _reap_forever(settings.REAPER_INTERVAL_SECONDS), context=background.detached_context()
    )
