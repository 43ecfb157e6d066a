"""Validate and store forwarded events exactly once, then update lifecycle, transcript and the live feed.

One code path for the websocket, the sendBeacon endpoint and the REST API's batch endpoint:
`parse_message` (raw text) or `validate_envelope` (parsed JSON), then `store_batch`.
Batches are group-committed: a per-process writer stores every batch waiting (from any number of
sessions) in one round of statements (`_store`), and each is acknowledged only once stored.
Duplicates (same seq, or same source + event_id) are acknowledged, not stored twice. Transcripts
are rebuilt incrementally (from the last quiet point of the fold) after the ack: right after it
when idle, and under load on a thread of their own, so that stores never wait for them. The live
feed gets one message per round.
"""

import asyncio
import contextlib
import json
import logging
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, connections, transaction
from django.db.models.constants import OnConflict
from django.utils import timezone

from operations import metrics
from privacy.redaction import redact_items

from . import background, feed, lifecycle, rawsql, transcript, transcript_rows
from .models import TRANSITIONS, AvatarSession, EventSource, SessionEvent

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
    """`{"type": "events", "events": [...]}` (type optional) → the items, each still to be checked by store_batch."""
    if not isinstance(obj, dict) or obj.get("type", "events") != "events" or not isinstance(obj.get("events"), list):
        raise IngestError("bad_envelope", 'Expected {"type": "events", "events": [...]}.')
    if len(obj["events"]) > settings.INGEST_MAX_BATCH:
        raise IngestError(
            "too_large", f"{len(obj['events'])} events; at most {settings.INGEST_MAX_BATCH} a message.", 413
        )
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
    The batch is stored together with whatever other batches this process has waiting (group
    commit); this returns once it is committed.
    """
    result = IngestResult()
    valid = []
    for item in events:
        problem = _problem(item)
        if problem is None:
            valid.append(item)
        else:
            seq = item.get("seq") if isinstance(item, dict) else None
            result.errors.append(
                {"code": "bad_event", "message": problem, "seqs": [seq] if isinstance(seq, int) else []}
            )
    if not valid:
        return result
    redact_items(session, valid)  # before anything of them is stored, here or downstream
    await _writer().store(session.pk, valid)
    result.acked = [item["seq"] for item in valid]
    return result


# Group commit: one writer per event loop (Daphne has one; pytest-asyncio makes one per test).
FLUSH_MAX_EVENTS = 1000  # events stored in one round, at most (whole batches: one may exceed it)
REBUILD_INTERVAL = 0.5  # seconds: under load the transcripts are rebuilt together at most this often
REBUILD_CHUNK = 16  # under sustained load, sessions rebuilt together at most
REBUILD_GAP = 1.0  # seconds: under load a session's transcript is rebuilt at most this often
BUSY_WINDOW, BUSY_SESSIONS = 0.25, 8  # load: batches from this many sessions within this many seconds
# Seconds: under load the live feed is broadcast at most this often (one group_send): the setting
# INGEST_FEED_PERIOD on Redis, where a send costs a round trip on every process. In memory a send
# costs little: the frames of the rounds stored while one is sent go out together in the next.
FEED_PERIOD = 0.0
RETRY_AFTER = 1.0  # seconds before a failed transcript rebuild is tried again

# SQLite has one write lock per database file, and a connection that finds it taken sleeps before
# trying again (1, 2, 5 ms...). The stores and the rebuilds on the other thread take turns here instead.
_sqlite_writes = threading.Lock()


def _writing():
    return _sqlite_writes if connection.vendor == "sqlite" else contextlib.nullcontext()


_writers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Writer]" = weakref.WeakKeyDictionary()


def _writer() -> "_Writer":
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = _Writer(loop)
    return writer


@dataclass
class _Batch:
    session_id: object
    items: list[dict]
    future: asyncio.Future


class _Writer:
    """Stores every waiting batch together (one round) as soon as the previous round has stored its own,
    resolves the batches' futures (the acks), then has the transcripts those events changed rebuilt
    and sends the live feed one message for it all.

    Idle, the round rebuilds them itself, on the database thread, before that thread takes anything
    else: whoever got an ack and reads next sees the transcript. Under load they are rebuilt on a
    thread of their own (the rebuilder, with its own database connection), one rebuild at a time,
    while the rounds go on storing: the transcripts follow up to REBUILD_GAP later (each rebuild of a
    session costs about the same however few events it adds, so under load fewer, larger ones).

    The task runs while there is work and ends when idle; `store` starts it again.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.pending: list[_Batch] = []
        self.dirty: dict = {}  # session id → lowest transcript seq stored since its last rebuild
        self.retry_at: dict = {}  # session id → loop time before which a failed rebuild is not tried again
        self.rebuilt_at: dict = {}  # session id → loop time of its last rebuild
        self.last_rebuild_at = -1e9  # loop time of the last rebuild
        self.outbox: list[dict] = []  # feed frames not broadcast yet, in order
        self.last_send_at = 0.0  # loop time of the last broadcast
        self.acked_at = self.outbox_acked_at = 0.0  # wall time of the last ack, of the oldest one in the outbox
        self.sender: asyncio.Task | None = None
        self.next_rebuild_at = 0.0  # under load, loop time of the next rebuild of every dirty transcript
        self.arrivals: dict = {}  # session id → loop time of its last batch
        self.inflight: dict = {}  # what the database thread is rebuilding (session id → lowest seq)
        self.rebuilder: ThreadPoolExecutor | None = None  # the thread rebuilding under load
        self.rebuilding: asyncio.Future | None = None  # its rebuild, until collected
        self.background: dict = {}  # what it is rebuilding (session id → lowest seq)
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def store(self, session_id, items: list[dict]) -> None:
        batch = _Batch(session_id, items, self.loop.create_future())
        self.arrivals[session_id] = self.loop.time()
        self.pending.append(batch)
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self.run(), context=background.detached_context())
        await batch.future

    async def run(self) -> None:
        try:
            while self.pending or self.dirty or self.rebuilding:
                messages: list[dict] = []
                sessions: dict = {}
                self.collect(messages)
                batches = self.take()
                # Sessions these batches give new transcript events to (stored in this round, below).
                fresh: dict = {}
                for batch in batches:
                    for item in batch.items:
                        if item["event"]["event_type"] in transcript.TRANSCRIPT_EVENTS:
                            seq = item["seq"]
                            if seq < fresh.get(batch.session_id, seq + 1):
                                fresh[batch.session_id] = seq
                delay = None if batches else self.rebuild_delay(self.loop.time())
                if delay != 0 and not batches:
                    # Only transcripts held back (load, a failed rebuild, the rebuilder busy) are left:
                    # wait for their time, new events or the rebuilder.
                    self.feed(messages)
                    self.wake.clear()
                    try:
                        await asyncio.wait_for(self.wake.wait(), delay)
                    except TimeoutError:
                        pass
                    continue
                await self.round(batches, fresh, messages, sessions)
                self.feed(messages)
        except BaseException as exc:
            for batch in self.pending:
                if not batch.future.done():
                    batch.future.set_exception(
                        IngestError(
                            "server_busy", "The server could not store these events; send them again later.", 503
                        )
                    )
            self.pending.clear()
            if not isinstance(exc, Exception):
                raise
            log.exception("ingest writer failed")
        finally:
            if self.rebuilder is not None and self.rebuilding is None:
                # Idle: let the rebuilder's thread go, closing its database connection in it.
                self.rebuilder.submit(connections.close_all)
                self.rebuilder.shutdown(wait=False)
                self.rebuilder = None

    def rebuild_delay(self, now: float) -> float | None:
        """Seconds until a held-back transcript may be rebuilt (0: now), or None: not before something
        happens (new events, the rebuilder done)."""
        waiting = [sid for sid in self.dirty if sid not in self.background]
        busy = self.busy(now)
        if not waiting or (busy and self.rebuilding):
            return None
        held = busy and now < self.next_rebuild_at
        return max(
            0.0, min(max(self.ready_at(sid, busy), self.next_rebuild_at if held else 0) for sid in waiting) - now
        )

    def ready_at(self, sid, busy: bool) -> float:
        """Loop time from which a session's transcript may be rebuilt: RETRY_AFTER after a failed
        rebuild; under load also REBUILD_GAP after its last one."""
        at, last = self.retry_at.get(sid, 0), self.rebuilt_at.get(sid)
        return max(at, last + REBUILD_GAP) if busy and last is not None else at

    def rebuild_in_background(self, lowest: dict) -> None:
        """Have the rebuilder rebuild `lowest` (session id → lowest seq); `collect` takes the outcome."""
        if self.rebuilder is None:
            self.rebuilder = ThreadPoolExecutor(1, thread_name_prefix="transcripts")
        self.background = lowest
        self.rebuilding = self.loop.run_in_executor(self.rebuilder, _rebuild_in_thread, lowest)
        self.rebuilding.add_done_callback(lambda _: self.wake.set())

    def collect(self, messages: list[dict]) -> None:
        """The rebuilder's outcome, once done: its frames into `messages`, or its sessions dirty again."""
        if self.rebuilding is None or not self.rebuilding.done():
            return
        lowest, done, self.background, self.rebuilding = self.background, self.rebuilding, {}, None
        try:
            rebuilt = done.result()
        except DatabaseError as exc:
            log.warning("transcript rebuild of %d sessions failed: %s", len(lowest), exc)
            self._redirty(lowest)
            return
        messages.extend(_rebuilt_frames(rebuilt, {}))

    def feed(self, messages: list[dict]) -> None:
        """Queue a round's feed frames (built now, so each shows its round's session state) for the sender."""
        if not messages:
            return
        self.outbox_acked_at = self.outbox_acked_at if self.outbox else self.acked_at
        self.outbox.extend(feed.feed_frames(messages))
        if self.sender is None or self.sender.done():
            self.sender = self.loop.create_task(self.send_feed(), context=background.detached_context())

    async def send_feed(self) -> None:
        """Broadcast the outbox in order: at once when idle; under load at most every FEED_PERIOD (on
        Redis), so that the frames of several rounds share one group_send."""
        while self.outbox:
            wait = self.last_send_at + getattr(settings, "INGEST_FEED_PERIOD", FEED_PERIOD) - self.loop.time()
            if wait > 0 and self.busy(self.loop.time()):
                await asyncio.sleep(wait)
            frames, self.outbox, acked_at = self.outbox, [], self.outbox_acked_at
            self.last_send_at = self.loop.time()
            await feed.group_send(frames)
            metrics.FEED_LAG_SECONDS.observe(max(0.0, time.time() - acked_at))

    def take(self) -> list[_Batch]:
        """The waiting batches for one round: whole batches, up to FLUSH_MAX_EVENTS events."""
        take, count = 0, 0
        while take < len(self.pending) and (not take or count + len(self.pending[take].items) <= FLUSH_MAX_EVENTS):
            count += len(self.pending[take].items)
            take += 1
        batches, self.pending = self.pending[:take], self.pending[take:]
        return batches

    def busy(self, now: float) -> bool:
        """Under load: batches from BUSY_SESSIONS sessions or more within the last BUSY_WINDOW seconds."""
        since = now - BUSY_WINDOW
        recent = sum(1 for at in self.arrivals.values() if at > since)
        if len(self.arrivals) > 4 * recent + 1000:
            self.arrivals = {sid: at for sid, at in self.arrivals.items() if at > since}
        return recent >= BUSY_SESSIONS

    def due(self, now: float, busy: bool, fresh: dict) -> dict:
        """Sessions to rebuild in this round → the lowest transcript seq stored since their last rebuild
        (taken out of `dirty`; `fresh`: those of this round's batches, counted as stored). All of them
        when idle; under load, those not rebuilt lately."""
        for sid, seq in fresh.items():
            if seq < self.dirty.get(sid, seq + 1):
                self.dirty[sid] = seq
        # A session whose rebuild failed waits RETRY_AFTER; under load, one rebuilt lately waits out its
        # REBUILD_GAP (`ready_at`), and all wait for the next rebuild time.
        if busy and (self.rebuilding or now < self.next_rebuild_at):
            return {}
        due = [sid for sid in self.dirty if self.ready_at(sid, busy) <= now and sid not in self.background]
        if busy and now - self.last_rebuild_at < 2 * REBUILD_INTERVAL and len(due) > REBUILD_CHUNK:
            # Sustained load: a few at a time, the longest waiting first, the rest in the next rebuilds:
            # each rebuild's writes are short.
            # (A burst after a quiet spell is rebuilt in one go.)
            due = due[:REBUILD_CHUNK]
        elif busy and due:
            self.next_rebuild_at = now + REBUILD_INTERVAL
        if len(self.rebuilt_at) > 4 * len(self.dirty) + 1000:  # forget gaps that are over
            self.rebuilt_at = {sid: at for sid, at in self.rebuilt_at.items() if at > now - REBUILD_GAP}
        for sid in due:
            self.retry_at.pop(sid, None)
            self.rebuilt_at[sid] = now
        if due:
            self.last_rebuild_at = now
        return {sid: self.dirty.pop(sid) for sid in due}

    async def round(self, batches: list[_Batch], fresh: dict, messages: list[dict], sessions: dict) -> None:
        """Store `batches` (acked as soon as they are committed), then have the transcripts that are
        due rebuilt: one call to the database thread.

        Whether the process is busy is judged there, after the commit: batches that arrived
        meanwhile from enough sessions mean load (the due transcripts go to the rebuilder, sessions
        rebuilt lately wait their interval); otherwise it is idle (every transcript is brought up to
        date there, before the database thread takes anything else, so whoever got an ack and reads
        next sees it). While `work` runs the writer task waits for it: only `pending` changes."""
        loop = self.loop
        loaded = self.busy(loop.time())
        this_round = {b.session_id for b in batches}

        def committed() -> None:  # on the loop, while the database thread goes on
            self.acked_at = time.time()
            for batch in batches:
                if not batch.future.done():  # a closed socket's consumer may have stopped waiting
                    batch.future.set_result(None)

        def work():
            stored, rebuilt, rebuild_failure = None, None, None
            if batches:
                try:
                    with _writing():
                        stored = _store([(b.session_id, b.items) for b in batches])
                except DatabaseError as exc:
                    return None, exc, {}, False, None, None
                loop.call_soon_threadsafe(committed)
            # Batches that arrived meanwhile count towards load as the arrivals do: from BUSY_SESSIONS
            # sessions with this round's. (`pending` may grow meanwhile: a benign read; `arrivals` is
            # the loop's, judged before.)
            busy = loaded or len(this_round.union(b.session_id for b in self.pending)) >= BUSY_SESSIONS
            lowest = self.due(now=loop.time(), busy=busy, fresh=fresh)
            if lowest and not busy:
                self.inflight = lowest
                try:
                    rebuilt = transcript_rows.rebuild(lowest, _writing)
                except DatabaseError as exc:
                    rebuild_failure = exc
                self.inflight = {}
            return stored, None, lowest, busy, rebuilt, rebuild_failure

        started = time.perf_counter()
        try:
            stored, failure, lowest, busy, rebuilt, rebuild_failure = await database_sync_to_async(work)()
        except BaseException:
            self.pending = [b for b in batches if not b.future.done()] + self.pending
            self._redirty(self.inflight)
            self.inflight = {}
            raise
        metrics.INGEST_ROUND_SECONDS.observe(time.perf_counter() - started)
        if failure is not None:
            log.warning(
                "ingest of %d events from %d batches failed: %s",
                sum(len(b.items) for b in batches),
                len(batches),
                failure,
            )
            for batch in batches:
                if not batch.future.done():
                    batch.future.set_exception(
                        IngestError("server_busy", "The database is unavailable; send these events again later.", 503)
                    )
            return
        for batch in batches:
            if not batch.future.done():  # normally done already by `committed`
                batch.future.set_result(None)
            session = stored.get(batch.session_id)
            if session is not None:
                sessions[batch.session_id] = session
                # One frame per stored batch, as the feed has always had.
                messages.append({"type": "session", "session": session})
        if lowest and busy:
            self.rebuild_in_background(lowest)
        elif rebuild_failure is not None:
            log.warning("transcript rebuild of %d sessions failed: %s", len(lowest), rebuild_failure)
            self._redirty(lowest)
        elif rebuilt:
            messages.extend(_rebuilt_frames(rebuilt, sessions))

    def _redirty(self, lowest: dict) -> None:
        """A rebuild that did not happen: try those sessions again a little later."""
        retry = self.loop.time() + RETRY_AFTER
        for sid, seq in lowest.items():
            self.dirty[sid] = min(seq, self.dirty.get(sid, seq))
            self.retry_at[sid] = retry


def _rebuild_in_thread(lowest: dict) -> dict:
    """transcript_rows.rebuild on the rebuilder's thread, with Django's checks of its connection."""
    close_old_connections()
    try:
        return transcript_rows.rebuild(lowest, _writing)
    finally:
        close_old_connections()


def _rebuilt_frames(rebuilt: dict, sessions: dict) -> list[dict]:
    """Feed frames of a rebuild (session id → (session, changed entry dicts)). A session with a frame
    in `sessions` (stored in the same round) shows its new metrics there; the others get a metrics frame."""
    frames = []
    for sid, (session, entries) in rebuilt.items():
        metrics = {name: getattr(session, name) for name in feed.METRICS}
        if sid in sessions:
            for name, value in metrics.items():
                setattr(sessions[sid], name, value)
        else:
            frames.append({"type": "metrics", "session_id": str(sid), **metrics})
        frames.extend({"type": "transcript", "session_id": str(sid), "entry": entry} for entry in entries)
    return frames


LIFECYCLE_FIELDS = ["status", "started_at", "ended_at", "end_reason", "error"]
# What the flush reads of a session: its status machine and what the feed shows (feed.session_dict).
SESSION_FIELDS = [
    "id",
    *LIFECYCLE_FIELDS,
    "avatar_id",
    "profile",
    "created_at",
    "last_event_at",
    "turn_count",
    "interruption_count",
    "median_latency_ms",
]


def _store(batches: list[tuple[object, list[dict]]]) -> dict:
    """Store the batches of many sessions; the sessions' rows after it, by id.

    The sessions are touched (last_event_at) and their events inserted first (`_touch_and_insert`:
    the unique constraints drop duplicates, same seq or same source + event_id), then the sessions
    whose status the events move get it moved, each in a transaction with its row locked (the
    websocket and a beacon may race). Nothing is acked before all of it ran, and a batch sent again
    after a failure in between is stored once and moves the status then: the status machine only
    moves forward, so applying an event again changes nothing it did not change the first time.
    """
    now = timezone.now()
    by_session: dict = {}
    for session_id, items in batches:
        by_session.setdefault(session_id, []).extend(items)
    sessions = _touch_and_insert(by_session, now)
    moving = sorted((sid for sid in sessions if _moves(sessions[sid], by_session[sid])), key=str)
    if moving:
        with transaction.atomic():
            locked = AvatarSession.objects.select_for_update().only(*SESSION_FIELDS).in_bulk(moving)
            for sid in moving:
                session = sessions[sid] = locked[sid]
                lifecycle.apply_events(session, by_session[sid], now)
                session.save(update_fields=LIFECYCLE_FIELDS)
    return sessions


INSERT_CHUNK = 500  # rows a statement: 4,000 parameters, under SQLite's and PostgreSQL's limits
EVENT_FIELDS = [
    "session",
    "seq",
    "event_id",
    "event_type",
    "source",
    "payload",
    "client_ts",
    "received_at",
    "clock_skewed",
]
_sql: dict = {}  # connection vendor → the statements of _touch_and_insert, built once


def _statements() -> dict:
    """UPDATE … RETURNING SESSION_FIELDS (with the converters of their columns), and the INSERT of
    events (plain, and on PostgreSQL the same inside a WITH), for the current connection."""
    built = _sql.get(connection.vendor)
    if built is not None:
        return built
    ops = connection.ops
    meta = AvatarSession._meta
    fields = [f for f in meta.concrete_fields if f.name in SESSION_FIELDS]  # Model.from_db takes the model's order
    columns = ", ".join(ops.quote_name(f.column) for f in fields)
    touch = "UPDATE {} SET {} = %s WHERE {} IN ({{ids}}) RETURNING {}".format(
        ops.quote_name(meta.db_table),
        ops.quote_name(meta.get_field("last_event_at").column),
        ops.quote_name(meta.pk.column),
        columns,
    )
    converters = rawsql.converters(meta, fields)
    events = [SessionEvent._meta.get_field(name) for name in EVENT_FIELDS]
    event_columns = ", ".join(ops.quote_name(f.column) for f in events)
    on_conflict = OnConflict.IGNORE
    insert = f"{ops.insert_statement(on_conflict=on_conflict)} {ops.quote_name(SessionEvent._meta.db_table)} ({event_columns}) VALUES {{rows}} {ops.on_conflict_suffix_sql(events, on_conflict, None, None)}"  # noqa: E501
    built = {
        "touch": touch,
        "converters": converters,
        "names": [f.attname for f in fields],
        "insert": insert,
        "row": "({})".format(", ".join(["%s"] * len(events))),
    }
    if connection.vendor == "postgresql":
        # The events of sessions that exist (those the UPDATE returned), typed for their columns.
        built["touch_and_insert"] = (
            f"WITH touched AS ({touch}), stored AS (INSERT INTO {ops.quote_name(SessionEvent._meta.db_table)} ({event_columns}) SELECT * FROM (VALUES {{rows}})"  # noqa: E501
            f" AS event ({event_columns}) WHERE {ops.quote_name(events[0].column)} IN (SELECT {ops.quote_name(meta.pk.column)} FROM touched) ON CONFLICT DO NOTHING RETURNING 1)"  # noqa: E501
            f" SELECT {columns}, (SELECT count(*) FROM stored) FROM touched"
        )
        built["typed_row"] = "({})".format(", ".join(f"%s::{f.db_type(connection)}" for f in events))
    _sql[connection.vendor] = built
    return built


def _touch_and_insert(by_session: dict, now: datetime) -> dict:
    """Set last_event_at of the sessions to `now` and insert their events; the sessions that exist
    (SESSION_FIELDS loaded), by id. Events of a session that does not exist are dropped.

    Plain statements: the ORM took longer to build them than the database to run them. On
    PostgreSQL one statement (a data-modifying WITH) does both: one round trip and one commit a
    round instead of two, measured at 45 % less of the client's CPU for a round.
    """
    if not by_session:
        return {}
    sql = _statements()
    pk = AvatarSession._meta.pk
    ids = list(by_session)
    params = [
        AvatarSession._meta.get_field("last_event_at").get_db_prep_save(now, connection),
        *(pk.get_db_prep_value(sid, connection) for sid in ids),
    ]
    placeholders = ", ".join(["%s"] * len(ids))
    rows = [(sid, item) for sid, items in by_session.items() for item in items]
    inserted, offered = 0, len(rows)  # events stored, and those of sessions that exist (the rest are dupes)
    with connection.cursor() as cursor:
        if "touch_and_insert" in sql:
            first, rows = rows[:INSERT_CHUNK], rows[INSERT_CHUNK:]
            cursor.execute(
                sql["touch_and_insert"].format(ids=placeholders, rows=", ".join([sql["typed_row"]] * len(first))),
                params + _event_params(first, now),
            )
            touched = cursor.fetchall()
            inserted = touched[0][-1] if touched else 0  # the count of the WITH's INSERT ends each row
            touched = [row[:-1] for row in touched]
        else:
            cursor.execute(sql["touch"].format(ids=placeholders), params)
            touched = cursor.fetchall()
        sessions = {}
        for values in rawsql.convert(touched, sql["converters"]):
            session = AvatarSession.from_db(connection.alias, sql["names"], values)
            sessions[session.pk] = session
        offered -= sum(len(items) for sid, items in by_session.items() if sid not in sessions)
        rows = [(sid, item) for sid, item in rows if sid in sessions]
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            cursor.execute(sql["insert"].format(rows=", ".join([sql["row"]] * len(chunk))), _event_params(chunk, now))
            inserted += cursor.rowcount
    metrics.EVENTS_STORED.inc(inserted)
    metrics.EVENTS_DUPLICATE.inc(offered - inserted)
    return sessions


def _event_params(rows: list[tuple[object, dict]], now: datetime) -> list:
    """The INSERT parameters of the events, EVENT_FIELDS of each row in turn."""
    ops = connection.ops
    received = ops.adapt_datetimefield_value(now)
    session_field = SessionEvent._meta.get_field("session")
    # The page's clock is kept as it is; one far from the server's is flagged, not corrected.
    server_ms, skew_ms = now.timestamp() * 1000, settings.CLOCK_SKEW_SECONDS * 1000
    params = []
    for sid, item in rows:
        event = item["event"]
        ts = item.get("ts")
        params += [
            session_field.get_db_prep_save(sid, connection),
            item["seq"],
            event.get("event_id") or "",
            event["event_type"],
            item["source"],
            json.dumps(event),
            ops.adapt_datetimefield_value(datetime.fromtimestamp(ts / 1000, tz=UTC)) if ts else None,
            received,
            bool(ts) and abs(ts - server_ms) > skew_ms,
        ]
    return params


def _moves(session: AvatarSession, items: list[dict]) -> bool:
    """Whether any item asks the status machine for a move it would make."""
    for item in items:
        target = lifecycle.target_of(item)
        if target and target[0] != session.status and target[0] in TRANSITIONS[session.status]:
            return True
    return False
