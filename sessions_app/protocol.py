"""The forwarding protocol (ARCHITECTURE.md "Forwarding protocol"): parse a message, check its
items, rate-limit a connection. Nothing here touches the database."""

import json
import time
from dataclasses import dataclass, field

from django.conf import settings

from .models import EventSource


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
    return validate_envelope(decode_message(raw))


def decode_message(raw: str | bytes):
    """Raw message text → its JSON value, or IngestError (too_large, malformed_json)."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > settings.INGEST_MAX_MESSAGE_BYTES:
        raise IngestError(
            "too_large", f"Message of {size} bytes; the limit is {settings.INGEST_MAX_MESSAGE_BYTES}.", 413
        )
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise IngestError("malformed_json", "The message is not valid JSON.") from None


def validate_envelope(obj) -> list:
    """`{"type": "events", "events": [...]}` (type optional) → the items, each still to be checked by check_items."""
    if not isinstance(obj, dict) or obj.get("type", "events") != "events" or not isinstance(obj.get("events"), list):
        raise IngestError("bad_envelope", 'Expected {"type": "events", "events": [...]}.')
    if len(obj["events"]) > settings.INGEST_MAX_BATCH:
        raise IngestError(
            "too_large", f"{len(obj['events'])} events; at most {settings.INGEST_MAX_BATCH} a message.", 413
        )
    return obj["events"]


def check_items(items: list) -> tuple[list[dict], list[dict]]:
    """The items that can be stored, and a bad_event error for each of the others."""
    valid, errors = [], []
    for item in items:
        problem = _problem(item)
        if problem is None:
            valid.append(item)
        else:
            seq = item.get("seq") if isinstance(item, dict) else None
            errors.append({"code": "bad_event", "message": problem, "seqs": [seq] if isinstance(seq, int) else []})
    return valid, errors


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
