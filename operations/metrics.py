"""The site's Prometheus series (scraped at /metrics).

With PROMETHEUS_MULTIPROC_DIR set (several Daphne processes), prometheus_client keeps every value in
a per-process file of that directory and one scrape adds them up; it must be set before this module
is imported and be empty when the processes start. Without it the values live in this process.
Everything here is cheap to update: code elsewhere calls these directly (`EVENTS_STORED.inc(n)`).
METRICS_ENABLED=false turns every series into a stand-in that does nothing (the bench's baseline).
"""

from __future__ import annotations

import os
import re

from prometheus_client import Counter, Gauge, Histogram

ENABLED = os.environ.get("METRICS_ENABLED", "true").lower() not in ("0", "false", "no", "off")


class _Off:
    """A series that records nothing (METRICS_ENABLED=false)."""

    def labels(self, *values, **named):
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    dec = set = observe = inc


if not ENABLED:
    Counter = Gauge = Histogram = lambda *args, **kwargs: _Off()  # noqa: E731, F811

SOCKETS_OPEN = Gauge(
    "avatar_site_open_sockets",
    "Websockets open now: forwarding (pages) and dashboard (staff).",
    ["kind"],
    multiprocess_mode="livesum",
)
PROCESSES = Gauge("avatar_site_processes", "Server processes alive.", multiprocess_mode="livesum")
PROCESSES.set(1)

EVENTS_STORED = Counter("avatar_site_events_stored", "Forwarded events stored.")
EVENTS_DUPLICATE = Counter("avatar_site_events_duplicate", "Forwarded events acknowledged again, not stored twice.")
EVENTS_REJECTED = Counter(
    "avatar_site_events_rejected",
    "Forwarded events refused, by reason (a message that could not be read counts once).",
    ["reason"],
)
INGEST_ROUND_SECONDS = Histogram(
    "avatar_site_ingest_round_seconds",
    "Time of one ingest round: storing the waiting batches and the transcripts due.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
FEED_LAG_SECONDS = Histogram(
    "avatar_site_feed_lag_seconds",
    "From the ack of forwarded events to their dashboard frame going out.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

MINT_SECONDS = Histogram(
    "avatar_site_mint_seconds",
    "Time to mint a LiveAvatar session token (the call and its retries).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20),
)
MINT_FAILURES = Counter("avatar_site_mint_failures", "Session tokens not minted, by kind of failure.", ["kind"])

LIVEAVATAR_CALL_SECONDS = Histogram(
    "avatar_site_liveavatar_call_seconds",
    "One HTTP exchange with LiveAvatar, by endpoint.",
    ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LIVEAVATAR_CALLS = Counter(
    "avatar_site_liveavatar_calls",
    "HTTP exchanges with LiveAvatar, by endpoint and status (the HTTP status, timeout or unreachable).",
    ["endpoint", "status"],
)
LIVEAVATAR_RATE_LIMITED = Counter(
    "avatar_site_liveavatar_rate_limited", "429 answers from LiveAvatar, by endpoint.", ["endpoint"]
)
LIVEAVATAR_RETRY_AFTER_SECONDS = Histogram(
    "avatar_site_liveavatar_retry_after_seconds",
    "The wait LiveAvatar asked for with a 429 (Retry-After, else X-RateLimit-Reset).",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
LIVEAVATAR_CREDITS = Gauge(
    "avatar_site_liveavatar_credits",
    "Credits left on the LiveAvatar account (GET /v1/users/credits, read every few minutes).",
    multiprocess_mode="mostrecent",
)

REAPER_ACTIONS = Counter(
    "avatar_site_reaper_actions", "What the reaper did: orphaned, expired, reconciled, failed.", ["action"]
)
WEBHOOK_DELIVERIES = Counter("avatar_site_webhook_deliveries", "Webhook deliveries, by outcome.", ["outcome"])

# /v1/sessions/<id>/transcript → /v1/sessions/{id}/transcript: LiveAvatar counts its limits that way too.
_ID_SEGMENT = re.compile(r"/(?=[^/]*\d)[0-9A-Za-z_-]{16,}(?=/|$)")


def endpoint_of(method: str, path: str) -> str:
    """The endpoint a LiveAvatar call counts under: its method and path with ids replaced."""
    return f"{method} {_ID_SEGMENT.sub('/{id}', path)}"


def liveavatar_call(method: str, path: str, status: int | str, seconds: float, retry_after: float | None) -> None:
    """Count one exchange with LiveAvatar (status: the HTTP status, or "timeout" / "unreachable")."""
    endpoint = endpoint_of(method, path)
    LIVEAVATAR_CALL_SECONDS.labels(endpoint).observe(seconds)
    LIVEAVATAR_CALLS.labels(endpoint, str(status)).inc()
    if status == 429:
        LIVEAVATAR_RATE_LIMITED.labels(endpoint).inc()
        if retry_after is not None:
            LIVEAVATAR_RETRY_AFTER_SECONDS.observe(retry_after)


def rejected(errors: list[dict]) -> None:
    """Count the per-event errors of an ingest result ({"code", "seqs"} each)."""
    for error in errors:
        EVENTS_REJECTED.labels(error["code"]).inc(len(error["seqs"]) or 1)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
