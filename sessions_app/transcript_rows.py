"""The stored transcript: rows rebuilt from forwarded events, incrementally from each session's checkpoint.

`transcript` folds events into utterances (pure); this module reads the events, writes the rows that
changed and keeps the sessions' metrics and checkpoints. The transcript catch-up calls `rebuild`,
reads call `bring_up_to_date`, reconciliation calls `write_entries`.
"""

import contextlib
import uuid
from datetime import UTC, datetime

from django.db import connection, transaction

from control.models import ControlCommand
from privacy import redaction
from privacy.redaction import redact_entry
from profiles.models import AvatarProfile

from . import feed, rawsql, transcript
from .models import AvatarSession, SessionEvent, TranscriptEntry, TranscriptOrigin
from .sqlite_writes import write_turn


def _ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


METRIC_FIELDS = ("turn_count", "interruption_count", "median_latency_ms", "avatar_speaking_ms")
CHECKPOINT_FIELDS = ("transcript_seq", "transcript_position", "transcript_built_version")


def bring_up_to_date(session_ids) -> None:
    """Rebuild the transcripts among `session_ids` that are behind their stored events, whichever
    process stored them: a read after an ack sees that ack's events. A build from the first event,
    since the events a read finds unfolded may come before the checkpoint."""
    behind = AvatarSession.objects.filter(pk__in=list(session_ids)).transcript_behind().values_list("pk", flat=True)
    lowest = dict.fromkeys(behind, 0)
    if lowest:
        rebuild(lowest, write_turn)


def rebuild(lowest: dict, writing=contextlib.nullcontext, folded: dict | None = None) -> dict:
    """Rebuild the transcripts of many sessions from their checkpoints.

    `lowest`: session id → the lowest transcript seq stored since its last rebuild (a late event
    before the checkpoint means a build from the first event). Returns session id → (session,
    entry dicts created or changed). A handful of queries whatever the number of sessions.
    `folded`: the caller's memo of the entries before each checkpoint, kept between its rebuilds
    (used by one thread at a time).

    The events are read and folded outside any transaction, so that events go on being stored
    meanwhile (by another thread or process). Only the writes take a transaction, a short one,
    entered under `writing()` (the caller's turn at SQLite's one write lock). In it, with the
    sessions' rows locked, each plan is checked against what is stored now: a session whose
    checkpoint or entries after it changed in between (reconciliation, another process's rebuild)
    is planned again there.
    """
    ids = sorted(lowest, key=str)
    folded = {} if folded is None else folded
    plans = _plan(_sessions(ids), lowest, folded)
    with writing(), transaction.atomic():
        sessions = _sessions(ids, lock=True)  # a session deleted meanwhile is left out
        current = _entries_after({sid: plans[sid].start for sid in sessions})
        stale = {
            sid: session
            for sid, session in sessions.items()
            if plans[sid].basis != (_checkpoint(session), current[sid])
        }
        plans = {**{sid: plans[sid] for sid in sessions}, **_plan(stale, lowest, folded)}
        _apply(plans.values())
        _update_rows([plan.session for plan in plans.values()], [*METRIC_FIELDS, *CHECKPOINT_FIELDS])
    for sid, plan in plans.items():
        if plan.kept is not None:
            folded[sid] = plan.kept
    if len(folded) > 20000:
        folded.clear()
    return {sid: (plan.session, [feed.entry_dict(row) for row in plan.changed]) for sid, plan in plans.items()}


def _sessions(ids: list, lock: bool = False) -> dict:
    """The sessions of `ids` that exist (only their metrics and checkpoint loaded), by id; `lock`:
    their rows locked until the transaction ends. Plain SQL: the ORM took 2.4 ms to build and read
    the query for 16 sessions."""
    meta, ops = AvatarSession._meta, connection.ops
    # Model.from_db takes the fields in the model's order.
    fields = [
        f
        for f in meta.concrete_fields
        if f.name in ("id", "profile", "transcript_version", *METRIC_FIELDS, *CHECKPOINT_FIELDS)
    ]
    sessions = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT {} FROM {} WHERE {} IN ({}){}".format(
                ", ".join(ops.quote_name(f.column) for f in fields),
                ops.quote_name(meta.db_table),
                ops.quote_name(meta.pk.column),
                ", ".join(["%s"] * len(ids)),
                " FOR UPDATE" if lock and connection.features.has_select_for_update else "",
            ),
            [meta.pk.get_db_prep_value(sid, connection) for sid in ids],
        )
        for values in rawsql.convert(cursor.fetchall(), rawsql.converters(meta, fields)):
            session = AvatarSession.from_db(connection.alias, [f.attname for f in fields], values)
            sessions[session.pk] = session
    # Their profiles in one query, with only what redaction reads (policy_for): rebuilds run often.
    profiles = AvatarProfile.objects.only(*redaction.PROFILE_FIELDS).in_bulk(
        {s.profile_id for s in sessions.values() if s.profile_id}
    )
    for session in sessions.values():
        if session.profile_id:
            session.profile = profiles[session.profile_id]
    return sessions


def _checkpoint(session: AvatarSession) -> tuple[int, int]:
    return session.transcript_seq, session.transcript_position


# Sessions per statement where each session has its own bound: SQLite parses the ORs into a tree
# it allows 1,000 levels deep.
BOUNDS_PER_QUERY = 100


def _per_session(model, fields: list[str], ordered_by: str, op: str, bounds: dict, extra=("", ())) -> list[list]:
    """Rows of `model` whose `ordered_by` is `op` (">" or "<=") their session's bound (session id →
    bound), as lists of `fields` converted as the ORM converts them, in session and `ordered_by`
    order; `extra`: one more condition (SQL, params). Each session is a range of the unique
    (session, seq or position) index. Plain SQL: the ORM took 1.4 ms to build such a query for
    16 sessions, the database 0.04 ms to run it."""
    meta, ops = model._meta, connection.ops
    columns = [meta.get_field(name) for name in fields]
    key = ops.quote_name(meta.get_field("session").column)
    bounded = ops.quote_name(meta.get_field(ordered_by).column)
    prep = meta.get_field("session").get_db_prep_value
    ids, rows = list(bounds), []
    with connection.cursor() as cursor:
        for i in range(0, len(ids), BOUNDS_PER_QUERY):
            chunk = ids[i : i + BOUNDS_PER_QUERY]
            cursor.execute(
                "SELECT {} FROM {} WHERE ({}){} ORDER BY {}, {}".format(
                    ", ".join(ops.quote_name(field.column) for field in columns),
                    ops.quote_name(meta.db_table),
                    " OR ".join([f"({key} = %s AND {bounded} {op} %s)"] * len(chunk)),
                    extra[0],
                    key,
                    bounded,
                ),
                [p for sid in chunk for p in (prep(sid, connection), bounds[sid])] + list(extra[1]),
            )
            rows += cursor.fetchall()
    return rawsql.convert(rows, rawsql.converters(meta, columns))


def _entries_after(positions: dict) -> dict:
    """Session id → its entries after the position given, as (pk, position, *ENTRY_FIELDS) tuples."""
    after: dict = {sid: [] for sid in positions}
    for sid, *row in _per_session(
        TranscriptEntry, ["session", "id", "position", *ENTRY_FIELDS], "position", ">", positions
    ):
        after[sid].append(tuple(row))
    return after


class _Plan:
    """What a rebuild of one session writes, made from `basis`: its checkpoint and the entries after
    `start` as they were read."""

    def __init__(self, session: AvatarSession, start: int, basis: tuple):
        self.session, self.start, self.basis = session, start, basis
        self.full = False  # reconciliation's utterances among ours: rebuilt from every event, in `_apply`
        self.created, self.updated, self.deleted = [], [], []
        self.changed: list[TranscriptEntry] = []  # the rows created or changed, for the live feed
        self.kept = None  # (checkpoint, metric dicts of the entries before it), for the caller's memo


def _apply(plans) -> None:
    """Write the plans' entries, all sessions' together (in the transaction that checked their basis)."""
    deleted, updated, created = [], [], []
    for plan in plans:
        if plan.full:
            plan.changed = _rebuild_transcript(plan.session)
            continue
        deleted += plan.deleted
        updated += plan.updated
        created += plan.created
    if deleted:  # a queued reply an interrupt cancelled
        TranscriptEntry.objects.filter(pk__in=deleted).delete()
    _update_rows(updated, ENTRY_FIELDS)
    TranscriptEntry.objects.bulk_create(created)


def _plan(sessions: dict, lowest: dict, folded: dict) -> dict:
    """Session id → _Plan, for `sessions` (id → session, checkpoint as stored; set to the plan's)."""
    plans: dict = {}
    starts = {
        sid: (0, 0) if session.transcript_seq and lowest[sid] <= session.transcript_seq else _checkpoint(session)
        for sid, session in sessions.items()
    }
    for _ in range(2):
        late = _plan_from(sessions, starts, plans, folded)
        if not late:
            return plans
        starts = {sid: (0, 0) for sid in late}
    raise RuntimeError(f"transcript rebuild did not settle for {late}")  # a build from the first event has no floor


def _plan_from(sessions: dict, starts: dict, plans: dict, folded: dict) -> list:
    """Plan the sessions of `starts` (session id → the (seq, position) to build after) into `plans`.

    Sets the sessions' metrics and checkpoints (unsaved); returns the ids of sessions that need
    a build from the first event instead.
    """
    events: dict = {sid: [] for sid in starts}
    kinds = sorted(transcript.TRANSCRIPT_EVENTS)
    for sid, seq, source, payload, client_ts, received_at in _per_session(
        SessionEvent,
        ["session", "seq", "source", "payload", "client_ts", "received_at"],
        "seq",
        ">",
        {sid: seq for sid, (seq, _) in starts.items()},
        (
            " AND {} IN ({})".format(
                connection.ops.quote_name(SessionEvent._meta.get_field("event_type").column),
                ", ".join(["%s"] * len(kinds)),
            ),
            kinds,
        ),
    ):
        events[sid].append({"seq": seq, "source": source, "event": payload, "ts": _ms(client_ts or received_at)})
    # The entries up to each checkpoint never change: their metric columns are kept from the last
    # build (keyed by the checkpoint, so a checkpoint another process moved reads them again).
    before: dict = {}
    for sid, start in starts.items():
        cached = folded.get(sid)
        before[sid] = list(cached[1]) if cached and cached[0] == start else []
    missing = {sid: position for sid, (_, position) in starts.items() if position and not before[sid]}
    metric_columns = ["speaker", "interrupted", "latency_ms", "started_at", "ended_at"]
    for sid, *values in _per_session(TranscriptEntry, ["session", *metric_columns], "position", "<=", missing):
        before[sid].append(dict(zip(metric_columns, values, strict=True)))
    after = _entries_after({sid: position for sid, (_, position) in starts.items()})
    late = []
    for sid, (_, position) in starts.items():
        session = sessions[sid]
        plan = _Plan(session, position, (_checkpoint(session), after[sid]))
        rows = {
            row[1]: TranscriptEntry(
                pk=row[0], session_id=sid, position=row[1], **dict(zip(ENTRY_FIELDS, row[2:], strict=True))
            )
            for row in after[sid]
        }
        if any(row.origin != TranscriptOrigin.BROWSER for row in rows.values()):
            # Reconciliation placed LiveAvatar's utterances among ours (it resets the checkpoint to 0).
            plan.full = True
            session.transcript_built_version = session.transcript_version
            plans[sid] = plan
            continue
        floor = _ms(before[sid][-1]["started_at"]) if before[sid] and before[sid][-1]["started_at"] else None
        built = transcript.build_after(events[sid], position, floor)
        if built is None:
            late.append(sid)
            continue
        entries, checkpoint = built
        _senders(sid, entries)
        for entry in entries:
            values = {
                **redact_entry(session, entry),
                "started_at": _at(entry["started_at"]),
                "ended_at": _at(entry["ended_at"]),
                "origin": TranscriptOrigin.BROWSER,
            }
            row = rows.pop(entry["position"], None)
            if row is None:
                row = TranscriptEntry(
                    session_id=sid, position=entry["position"], **{f: values[f] for f in ENTRY_FIELDS}
                )
                plan.created.append(row)
                plan.changed.append(row)
            elif any(getattr(row, f) != values[f] for f in ENTRY_FIELDS):
                for f in ENTRY_FIELDS:
                    setattr(row, f, values[f])
                plan.updated.append(row)
                plan.changed.append(row)
            before[sid].append(values)
        plan.deleted = [row.pk for row in rows.values()]
        for name, value in transcript.metrics(before[sid]).items():
            setattr(session, name, value)
        session.transcript_seq, session.transcript_position = checkpoint or starts[sid]
        session.transcript_built_version = session.transcript_version  # as read before the events were
        kept = session.transcript_position
        plan.kept = ((session.transcript_seq, kept), before[sid][:kept])
        plans[sid] = plan
    return late


def _update_rows(rows: list, fields) -> None:
    """Save `fields` of many rows of one model: one UPDATE statement run for each row by the driver
    (executemany). Django's bulk_update builds a CASE expression per field and row, which costs
    more Python time than the database spends."""
    if not rows:
        return
    model = type(rows[0])
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        connection.ops.quote_name(meta.db_table),
        ", ".join(f"{connection.ops.quote_name(field.column)} = %s" for field in columns),
        connection.ops.quote_name(meta.pk.column),
    )
    params = [
        [field.get_db_prep_save(getattr(row, field.attname), connection) for field in columns]
        + [meta.pk.get_db_prep_save(row.pk, connection)]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _rebuild_transcript(session: AvatarSession) -> list[TranscriptEntry]:
    """Transcript from every stored transcript event, merged with what reconciliation added."""
    rows = (
        SessionEvent.objects.filter(session=session, event_type__in=transcript.TRANSCRIPT_EVENTS)
        .order_by("seq")
        .values_list("seq", "source", "payload", "client_ts", "received_at")
    )
    built = transcript.build(
        [
            {"seq": seq, "source": source, "event": payload, "ts": _ms(client_ts or received)}
            for seq, source, payload, client_ts, received in rows
        ]
    )
    _senders(session.pk, built)
    entries = [
        {**entry, "started_at": _at(entry["started_at"]), "ended_at": _at(entry["ended_at"]), "origin": "browser"}
        for entry in built
    ]
    entries += [
        {
            "speaker": e.speaker,
            "text": e.text,
            "started_at": e.started_at,
            "ended_at": e.ended_at,
            "interrupted": e.interrupted,
            "intended_text": e.intended_text,
            "unanswered": e.unanswered,
            "from_chunks": e.from_chunks,
            "origin": e.origin,
            "latency_ms": e.latency_ms,
            "sent_by": e.sent_by,
        }
        for e in session.transcript.filter(origin="liveavatar")
    ]
    return write_entries(session, entries)


def _senders(session_id, entries: list[dict]) -> None:
    """Replace each built entry's control_id with sent_by: the stored origin of that live-control
    command. The id comes from the page, so one that is not a command of this session counts for nothing."""
    for entry in entries:
        entry["control_id"] = _uuid(entry.get("control_id"))
    ids = {entry["control_id"] for entry in entries} - {None}
    origins = {}
    if ids:
        origins = dict(ControlCommand.objects.filter(session_id=session_id, pk__in=ids).values_list("pk", "origin"))
    for entry in entries:
        entry["sent_by"] = origins.get(entry.pop("control_id"), "")


def _uuid(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return None


def _at(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms is not None else None


ENTRY_FIELDS = (
    "speaker",
    "text",
    "intended_text",
    "started_at",
    "ended_at",
    "interrupted",
    "unanswered",
    "from_chunks",
    "origin",
    "latency_ms",
    "sent_by",
)


def write_entries(session: AvatarSession, entries: list[dict]) -> list[TranscriptEntry]:
    """Make the stored transcript equal `entries` (put in spoken order here), writing only what differs.

    Updates the session's metrics (the caller saves it). Returns the rows created or changed.
    Call inside a transaction holding the session's row lock.
    """
    latest = datetime.max.replace(tzinfo=UTC)
    entries = [redact_entry(session, entry) for entry in entries]
    entries = sorted(entries, key=lambda e: e["started_at"] or latest)  # stable: equal times keep their order
    current = {row.position: row for row in session.transcript.all()}
    created, updated = [], []
    for position, entry in enumerate(entries, start=1):
        row = current.pop(position, None)
        if row is None:
            created.append(TranscriptEntry(session=session, position=position, **{f: entry[f] for f in ENTRY_FIELDS}))
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
    # Positions may have moved (LiveAvatar's utterances placed among ours): the next build starts over.
    session.transcript_seq = session.transcript_position = 0
    return sorted(created + updated, key=lambda row: row.position)
