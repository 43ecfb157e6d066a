"""The stored transcript: rows rebuilt from forwarded events, incrementally from each session's checkpoint.

`transcript` folds events into utterances (pure); this module reads the events, writes the rows that
changed and keeps the sessions' metrics and checkpoints. The ingest writer calls `rebuild` after each
round; reconciliation calls `write_entries`.
"""

from datetime import UTC, datetime

from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce

from . import dashboard, transcript
from .models import AvatarSession, SessionEvent, TranscriptEntry, TranscriptOrigin


def _ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


METRIC_FIELDS = ("turn_count", "interruption_count", "median_latency_ms", "avatar_speaking_ms")
CHECKPOINT_FIELDS = ("transcript_seq", "transcript_position")


def rebuild(lowest: dict) -> dict:
    """Rebuild the transcripts of many sessions from their checkpoints, in one transaction.

    `lowest`: session id → the lowest transcript seq stored since its last rebuild (a late event
    before the checkpoint means a build from the first event). Returns session id → (session,
    entry dicts created or changed). A handful of queries whatever the number of sessions.
    """
    result = {}
    with transaction.atomic():
        ids = sorted(lowest, key=str)
        sessions = AvatarSession.objects.select_for_update().only(
            "id", *METRIC_FIELDS, *CHECKPOINT_FIELDS).in_bulk(ids)
        late = [sid for sid, session in sessions.items() if session.transcript_seq and lowest[sid] <= session.transcript_seq]
        todo = list(sessions)
        for attempt in range(2):
            if late:
                AvatarSession.objects.filter(pk__in=late).update(transcript_seq=0, transcript_position=0)
                for sid in late:
                    sessions[sid].transcript_seq = sessions[sid].transcript_position = 0
            late = _rebuild_from_checkpoints([sessions[sid] for sid in todo], result)
            todo = late
            if not late:
                break
        if late:  # cannot happen: a build from the first event has no floor
            raise RuntimeError(f"transcript rebuild did not settle for {late}")
        _update_rows([sessions[sid] for sid in result], [*METRIC_FIELDS, *CHECKPOINT_FIELDS])
    return {sid: (sessions[sid], entries) for sid, entries in result.items()}


_before_checkpoint: dict = {}  # session id → ((transcript_seq, transcript_position), metric dicts of those entries)


def _rebuild_from_checkpoints(sessions: list[AvatarSession], result: dict) -> list:
    """One pass over `sessions`: fold the events after each checkpoint, write the entries after it.

    Fills result (session id → changed entry dicts) and sets the sessions' metrics and checkpoints
    (unsaved); returns the ids of sessions that need a build from the first event instead.
    """
    ids = [s.pk for s in sessions]
    by_id = {s.pk: s for s in sessions}
    events: dict = {sid: [] for sid in ids}
    for sid, seq, source, payload, at in SessionEvent.objects.filter(
            session_id__in=ids, event_type__in=transcript.TRANSCRIPT_EVENTS, seq__gt=F("session__transcript_seq")
    ).order_by("session_id", "seq").values_list("session_id", "seq", "source", "payload",
                                                 Coalesce("client_ts", "received_at")):
        events[sid].append({"seq": seq, "source": source, "event": payload, "ts": _ms(at)})
    # The entries up to each checkpoint never change: their metric columns are kept from the last
    # build (keyed by the checkpoint, so a checkpoint another process moved reads them again).
    before: dict = {}
    for sid in ids:
        cached = _before_checkpoint.get(sid)
        if cached and cached[0] == (by_id[sid].transcript_seq, by_id[sid].transcript_position):
            before[sid] = list(cached[1])
    missing = [sid for sid in ids if sid not in before]
    for sid in missing:
        before[sid] = []
    if missing:
        for sid, speaker, interrupted, latency, started, ended in TranscriptEntry.objects.filter(
                session_id__in=missing, position__lte=F("session__transcript_position")).order_by(
                "position").values_list("session_id", "speaker", "interrupted", "latency_ms", "started_at", "ended_at"):
            before[sid].append({"speaker": speaker, "interrupted": interrupted, "latency_ms": latency,
                                "started_at": started, "ended_at": ended})
    after: dict = {sid: {} for sid in ids}
    for pk, sid, position, *values in TranscriptEntry.objects.filter(
            session_id__in=ids, position__gt=F("session__transcript_position")).values_list(
            "pk", "session_id", "position", *ENTRY_FIELDS):
        after[sid][position] = TranscriptEntry(pk=pk, session_id=sid, position=position, **dict(zip(ENTRY_FIELDS, values)))
    if len(_before_checkpoint) > 20000:
        _before_checkpoint.clear()
    created, updated, deleted, late = [], [], [], []
    for sid in ids:
        session = by_id[sid]
        if any(row.origin != TranscriptOrigin.BROWSER for row in after[sid].values()):
            # Reconciliation placed LiveAvatar's utterances among ours (it resets the checkpoint to 0).
            result[sid] = [dashboard.entry_dict(row) for row in _rebuild_transcript(session)]
            continue
        floor = _ms(before[sid][-1]["started_at"]) if before[sid] and before[sid][-1]["started_at"] else None
        built = transcript.build_after(events[sid], session.transcript_position, floor)
        if built is None:
            late.append(sid)
            continue
        entries, checkpoint = built
        rows, changed = after[sid], []
        for entry in entries:
            values = {**entry, "started_at": _at(entry["started_at"]), "ended_at": _at(entry["ended_at"]),
                      "origin": TranscriptOrigin.BROWSER}
            row = rows.pop(entry["position"], None)
            if row is None:
                row = TranscriptEntry(session_id=sid, position=entry["position"], **{f: values[f] for f in ENTRY_FIELDS})
                created.append(row)
                changed.append(row)
            elif any(getattr(row, f) != values[f] for f in ENTRY_FIELDS):
                for f in ENTRY_FIELDS:
                    setattr(row, f, values[f])
                updated.append(row)
                changed.append(row)
            before[sid].append(values)
        deleted += [row.pk for row in rows.values()]  # a queued reply an interrupt cancelled
        for name, value in transcript.metrics(before[sid]).items():
            setattr(session, name, value)
        if checkpoint:
            session.transcript_seq, session.transcript_position = checkpoint
        kept = session.transcript_position
        _before_checkpoint[sid] = ((session.transcript_seq, kept), before[sid][:kept])
        result[sid] = [dashboard.entry_dict(row) for row in changed]
    if deleted:
        TranscriptEntry.objects.filter(pk__in=deleted).delete()
    _update_rows(updated, ENTRY_FIELDS)
    TranscriptEntry.objects.bulk_create(created)
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
        connection.ops.quote_name(meta.pk.column))
    params = [[field.get_db_prep_save(getattr(row, field.attname), connection) for field in columns]
              + [meta.pk.get_db_prep_save(row.pk, connection)] for row in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


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
    # Positions may have moved (LiveAvatar's utterances placed among ours): the next build starts over.
    session.transcript_seq = session.transcript_position = 0
    return sorted(created + updated, key=lambda row: row.position)
