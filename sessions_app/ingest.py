"""Validate and store forwarded events exactly once, then update lifecycle, transcript and the live feed.

One code path for the websocket, the sendBeacon endpoint and the REST API's batch endpoint:
`parse_message` (raw text) or `validate_envelope` (parsed JSON), then `store_batch`.
A batch is one transaction with a handful of queries whatever its size; it is acknowledged only
once committed. Duplicates (same seq, or same source + event_id) are acknowledged, not stored twice.
"""

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from . import dashboard, lifecycle, transcript
from .models import AvatarSession, EventSource, SessionEvent, TranscriptEntry

log = logging.getLogger(__name__)


class IngestError(Exception):
    """The whole message or batch is refused; `code` is the protocol's error code."""

    def __init__(self, code: str, message: str, http_status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


@dataclass
class IngestResult:
    acked: list[int] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)  # {"code": "bad_event", "message", "seqs"}


class TokenBucket:
    """Per-connection rate limit in events: `rate` a second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()

    def take(self, cost: float) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if cost > self.tokens:
            return False
        self.tokens -= cost
        return True


def parse_message(raw: str | bytes) -> list:
    """Raw message text → the list of event items, or IngestError (too_large, malformed_json, bad_envelope)."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > settings.INGEST_MAX_MESSAGE_BYTES:
        raise IngestError("too_large", f"Message of {size} bytes; the limit is "
                          f"{settings.INGEST_MAX_MESSAGE_BYTES}.", 413)
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise IngestError("malformed_json", "The message is not valid JSON.") from None
    return validate_envelope(obj)


def validate_envelope(obj) -> list:
    """`{"type": "events", "events": [...]}` (type optional) → the items, each still to be checked by store_batch."""
    if not isinstance(obj, dict) or obj.get("type", "events") != "events" or not isinstance(obj.get("events"), list):
        raise IngestError("bad_envelope", 'Expected {"type": "events", "events": [...]}.')
    if len(obj["events"]) > settings.INGEST_MAX_BATCH:
        raise IngestError("too_large", f"{len(obj['events'])} events; at most {settings.INGEST_MAX_BATCH} "
                          "a message.", 413)
    return obj["events"]


def _problem(item) -> str | None:
    """Why one item cannot be stored, or None."""
    if not isinstance(item, dict):
        return "An event item must be an object."
    seq = item.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq < 2**31:
        return "seq must be a positive whole number."
    ts = item.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 < ts < 10**14):
        return "ts must be milliseconds since the epoch."
    if item.get("source") not in EventSource.values:
        return f"source must be one of {', '.join(EventSource.values)}."
    event = item.get("event")
    if not isinstance(event, dict):
        return "event must be an object."
    kind = event.get("event_type")
    if not isinstance(kind, str) or not 0 < len(kind) <= 96:
        return "event.event_type must be a short string."
    event_id = event.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or len(event_id) > 128):
        return "event.event_id must be a string of at most 128 characters."
    return None


async def store_batch(session: AvatarSession, events: list) -> IngestResult:
    """Store the valid items exactly once and acknowledge them; per-item problems come back as errors.

    Raises IngestError("server_busy", 503) when the database cannot take the batch: nothing is acked.
    """
    result = IngestResult()
    valid = []
    for item in events:
        problem = _problem(item)
        if problem is None:
            valid.append(item)
        else:
            seq = item.get("seq") if isinstance(item, dict) else None
            result.errors.append({"code": "bad_event", "message": problem, "seqs": [seq] if isinstance(seq, int) else []})
    if not valid:
        return result
    try:
        stored, changed = await database_sync_to_async(_store)(session.pk, valid)
    except DatabaseError as exc:
        log.warning("ingest for session %s failed: %s", session.pk, exc)
        raise IngestError("server_busy", "The database is unavailable; send these events again later.", 503) from exc
    result.acked = [item["seq"] for item in valid]
    await dashboard.broadcast(stored, changed)
    return result


def _ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


def _store(session_id, items: list[dict]) -> tuple[AvatarSession, list[TranscriptEntry]]:
    now = timezone.now()
    with transaction.atomic():
        # The row lock serialises batches of one session (websocket and beacon racing), so the
        # duplicate check and the transcript rebuild below see every earlier batch.
        session = AvatarSession.objects.select_for_update().get(pk=session_id)
        ids = [item["event"]["event_id"] for item in items if item["event"].get("event_id")]
        seen = SessionEvent.objects.filter(session=session).filter(
            Q(seq__in=[item["seq"] for item in items]) | Q(event_id__in=ids)).values_list("seq", "source", "event_id")
        seen_seqs = {seq for seq, _, _ in seen}
        seen_ids = {(source, event_id) for _, source, event_id in seen if event_id}
        new = []
        for item in items:
            key = (item["source"], item["event"].get("event_id") or "")
            if item["seq"] in seen_seqs or (key[1] and key in seen_ids):
                continue
            seen_seqs.add(item["seq"])
            seen_ids.add(key)
            new.append(item)
        SessionEvent.objects.bulk_create([
            SessionEvent(session=session, seq=item["seq"], event_id=item["event"].get("event_id") or "",
                         event_type=item["event"]["event_type"], source=item["source"], payload=item["event"],
                         client_ts=datetime.fromtimestamp(item["ts"] / 1000, tz=UTC) if item.get("ts") else None,
                         received_at=now)
            for item in new
        ])
        changed = []
        if new:
            session.last_event_at = now
            lifecycle.apply_events(session, new)
            if any(item["event"]["event_type"] in transcript.TRANSCRIPT_EVENTS for item in new):
                changed = _rebuild_transcript(session)
            session.save()
    return session, changed


def _rebuild_transcript(session: AvatarSession) -> list[TranscriptEntry]:
    """Transcript from every stored transcript event, merged with what reconciliation added."""
    rows = SessionEvent.objects.filter(session=session, event_type__in=transcript.TRANSCRIPT_EVENTS).order_by(
        "seq").values_list("seq", "source", "payload", "client_ts", "received_at")
    built = transcript.build([{"seq": seq, "source": source, "event": payload, "ts": _ms(client_ts or received)}
                              for seq, source, payload, client_ts, received in rows])
    entries = [{**entry, "started_at": _at(entry["started_at"]), "ended_at": _at(entry["ended_at"]),
                "origin": "browser"} for entry in built]
    entries += [{"speaker": e.speaker, "text": e.text, "started_at": e.started_at, "ended_at": e.ended_at,
                 "interrupted": e.interrupted, "from_chunks": e.from_chunks, "origin": e.origin,
                 "latency_ms": e.latency_ms} for e in session.transcript.filter(origin="liveavatar")]
    return write_entries(session, entries)


def _at(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms is not None else None


ENTRY_FIELDS = ("speaker", "text", "started_at", "ended_at", "interrupted", "from_chunks", "origin", "latency_ms")


def write_entries(session: AvatarSession, entries: list[dict]) -> list[TranscriptEntry]:
    """Make the stored transcript equal `entries` (put in spoken order here), writing only what differs.

    Updates the session's metrics (the caller saves it). Returns the rows created or changed.
    Call inside a transaction holding the session's row lock.
    """
    latest = datetime.max.replace(tzinfo=UTC)
    entries = sorted(entries, key=lambda e: e["started_at"] or latest)  # stable: equal times keep their order
    current = {row.position: row for row in session.transcript.all()}
    created, updated = [], []
    for position, entry in enumerate(entries, start=1):
        row = current.pop(position, None)
        if row is None:
            created.append(TranscriptEntry(session=session, position=position,
                                           **{f: entry[f] for f in ENTRY_FIELDS}))
        elif any(getattr(row, f) != entry[f] for f in ENTRY_FIELDS):
            for f in ENTRY_FIELDS:
                setattr(row, f, entry[f])
            updated.append(row)
    if current:  # fewer utterances than before (a queued reply that an interrupt cancelled)
        TranscriptEntry.objects.filter(pk__in=[row.pk for row in current.values()]).delete()
    TranscriptEntry.objects.bulk_create(created)
    TranscriptEntry.objects.bulk_update(updated, ENTRY_FIELDS)
    for name, value in transcript.metrics(entries).items():
        setattr(session, name, value)
    return sorted(created + updated, key=lambda row: row.position)
