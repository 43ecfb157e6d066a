"""The forwarding websocket and the beacon endpoint: who may send, what is stored, what is answered."""

import asyncio
import contextlib
import json
import time
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from avatar_site.asgi import application
from sessions_app import (
    close_codes,
    consumers,
    credentials,
    event_store,
    ingest,
    lifecycle,
    transcript,
    transcript_catchup,
    transcript_rows,
)
from sessions_app.models import AvatarSession, SessionEvent, SessionStatus, TranscriptEntry
from sessions_app.protocol import IngestError
from tests import factories
from tests.faults import database_refuses_events
from tests.waiting import transcript_caught_up

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = [(b"origin", b"http://127.0.0.1")]
CONVERSATION = json.loads((Path(__file__).parent / "fixtures" / "conversation.json").read_text())["events"]


def item(seq, event_type="client.keepalive", source="client", **fields):
    return {"seq": seq, "ts": 1764081234000 + seq, "source": source, "event": {"event_type": event_type, **fields}}


def message(*items):
    return json.dumps({"type": "events", "events": list(items)})


async def make_session(**fields):
    return await AvatarSession.objects.acreate(liveavatar_session_id=None, **fields)


async def open_socket(session, credential=None, headers=ORIGIN):
    credential = credentials.mint(session.id) if credential is None else credential
    socket = WebsocketCommunicator(
        application, f"/ws/sessions/{session.id}/events/?credential={credential}", headers=headers
    )
    connected, _ = await socket.connect()
    assert connected
    return socket


async def stored(session):
    return [(e.seq, e.event_type) async for e in SessionEvent.objects.filter(session=session).order_by("seq")]


async def test_another_sessions_credential_is_refused_with_4401():
    mine, other = await make_session(), await make_session()
    socket = await open_socket(mine, credential=credentials.mint(other.id))
    assert await socket.receive_output() == {"type": "websocket.close", "code": close_codes.UNAUTHORIZED}


async def test_a_forged_credential_is_refused_with_4401():
    session = await make_session()
    socket = await open_socket(session, credential=credentials.mint(session.id) + "x")
    assert await socket.receive_output() == {"type": "websocket.close", "code": close_codes.UNAUTHORIZED}


async def test_an_unknown_session_is_refused_with_4404():
    ghost = AvatarSession()  # never saved
    socket = await open_socket(ghost)
    assert await socket.receive_output() == {"type": "websocket.close", "code": close_codes.UNKNOWN_SESSION}


async def test_a_foreign_origin_is_refused():
    session = await make_session()
    socket = WebsocketCommunicator(
        application,
        f"/ws/sessions/{session.id}/events/?credential={credentials.mint(session.id)}",
        headers=[(b"origin", b"https://evil.example")],
    )
    connected, _ = await socket.connect()
    assert not connected


async def test_malformed_json_is_answered_and_the_connection_stays_open():
    session = await make_session()
    socket = await open_socket(session)
    await socket.send_to(text_data="{not json")
    reply = await socket.receive_json_from()
    assert (reply["type"], reply["code"]) == ("error", "malformed_json")
    await socket.send_to(text_data=json.dumps({"events": "nope"}))
    assert (await socket.receive_json_from())["code"] == "bad_envelope"
    await socket.send_to(text_data=message(item(1)))
    assert await socket.receive_json_from() == {"type": "ack", "seqs": [1]}
    assert await stored(session) == [(1, "client.keepalive")]
    await socket.disconnect()


async def test_an_oversized_message_is_refused_and_nothing_is_stored(settings):
    settings.INGEST_MAX_MESSAGE_BYTES = 2000
    session = await make_session()
    socket = await open_socket(session)
    await socket.send_to(text_data=message(item(1, "client.error", message="x" * 3000, stage="media")))
    reply = await socket.receive_json_from()
    assert (reply["type"], reply["code"]) == ("error", "too_large")
    assert await stored(session) == []
    await socket.disconnect()


async def test_a_flood_is_answered_with_rate_limited_and_nothing_is_stored(settings):
    settings.INGEST_RATE_PER_SECOND, settings.INGEST_RATE_BURST = 1, 5
    session = await make_session()
    socket = await open_socket(session)
    await socket.send_to(text_data=message(*[item(seq) for seq in range(1, 5)]))
    assert await socket.receive_json_from() == {"type": "ack", "seqs": [1, 2, 3, 4]}
    await socket.send_to(text_data=message(*[item(seq) for seq in range(5, 15)]))
    reply = await socket.receive_json_from()
    assert (reply["code"], reply["seqs"]) == ("rate_limited", list(range(5, 15)))
    assert [seq for seq, _ in await stored(session)] == [1, 2, 3, 4]
    await socket.disconnect()


async def test_a_flood_kept_up_after_warnings_is_closed_with_4429(settings):
    settings.INGEST_RATE_PER_SECOND, settings.INGEST_RATE_BURST = 1, 1
    session = await make_session()
    socket = await open_socket(session)
    for _ in range(consumers.FLOOD_WARNINGS):
        await socket.send_to(text_data=message(item(1), item(2)))
        assert (await socket.receive_json_from())["code"] == "rate_limited"
    await socket.send_to(text_data=message(item(1), item(2)))
    assert await socket.receive_output() == {"type": "websocket.close", "code": close_codes.FLOODING}
    assert await stored(session) == []


async def test_resent_seqs_and_repeated_event_ids_are_acked_but_stored_once():
    session = await make_session()
    socket = await open_socket(session)
    speak = item(2, "avatar.speak_text", source="command", event_id="cmd-1", text="Hi")
    await socket.send_to(text_data=message(item(1), speak))
    assert await socket.receive_json_from() == {"type": "ack", "seqs": [1, 2]}
    # The page lost the ack and sends again; the same command also comes back under a new seq.
    again = {**speak, "seq": 3}
    await socket.send_to(text_data=message(item(1), speak, again, item(4)))
    assert await socket.receive_json_from() == {"type": "ack", "seqs": [1, 2, 3, 4]}
    assert await stored(session) == [(1, "client.keepalive"), (2, "avatar.speak_text"), (4, "client.keepalive")]
    await socket.disconnect()


async def test_bad_events_are_answered_one_by_one_and_the_good_ones_stored():
    session = await make_session()
    socket = await open_socket(session)
    await socket.send_to(
        text_data=message(
            item(1),
            {"seq": 2, "source": "martian", "event": {"event_type": "x"}},
            {"seq": 3, "source": "client", "event": {}},
            item(4),
        )
    )
    assert await socket.receive_json_from() == {"type": "ack", "seqs": [1, 4]}
    errors = [await socket.receive_json_from(), await socket.receive_json_from()]
    assert [(e["code"], e["seqs"]) for e in errors] == [("bad_event", [2]), ("bad_event", [3])]
    assert await stored(session) == [(1, "client.keepalive"), (4, "client.keepalive")]
    await socket.disconnect()


async def test_a_conversation_sent_in_batches_is_stored_in_order_and_acked_after_it_is_stored():
    session = await make_session()
    socket = await open_socket(session)
    for start in range(0, len(CONVERSATION), 10):
        batch = CONVERSATION[start : start + 10]
        await socket.send_to(text_data=json.dumps({"type": "events", "events": batch}))
        ack = await socket.receive_json_from()
        if ack["type"] == "session.ended":  # the batch that ends it: the page hears how, then the ack
            assert ack == {"type": "session.ended", "status": "ended", "end_reason": "USER_CLOSED"}
            ack = await socket.receive_json_from()
        assert ack == {"type": "ack", "seqs": [i["seq"] for i in batch]}
        # By the time the ack is read the rows are committed and visible to another connection.
        assert await SessionEvent.objects.filter(session=session, seq__in=ack["seqs"]).acount() == len(batch)
    assert await stored(session) == [(i["seq"], i["event"]["event_type"]) for i in CONVERSATION]
    session = await transcript_caught_up(session.pk)
    assert (session.status, session.end_reason, session.turn_count) == (SessionStatus.ENDED, "USER_CLOSED", 7)
    await socket.disconnect()


async def test_a_database_outage_is_answered_server_busy_and_nothing_is_acked():
    session = await make_session()
    socket = await open_socket(session)
    async with database_refuses_events():
        await socket.send_to(text_data=message(item(1)))
        reply = await socket.receive_json_from()
    assert (reply["type"], reply["code"], reply["seqs"]) == ("error", "server_busy", [1])
    assert await stored(session) == []
    await socket.disconnect()


async def test_open_connections_are_counted():
    session = await make_session()
    first, second = await open_socket(session), await open_socket(session)
    await first.send_to(text_data=message(item(1)))
    await first.receive_json_from()  # connect has finished on both by the time a message is answered
    await second.send_to(text_data=message(item(2)))
    await second.receive_json_from()
    assert (await AvatarSession.objects.aget(pk=session.pk)).open_connections == 2
    await first.disconnect()
    await second.disconnect()
    assert (await AvatarSession.objects.aget(pk=session.pk)).open_connections == 0


# The beacon endpoint: the same protocol over HTTP.


def beacon_url(session, credential=None):
    return f"/sessions/{session.id}/events?credential={credential or credentials.mint(session.id)}"


async def test_the_beacon_stores_a_text_plain_batch_once(async_client):
    session = await make_session()
    body = message(item(1, "client.stopped", reason="USER_CLOSED"), item(2, "client.unload"))
    for _ in range(2):  # sendBeacon may fire twice
        response = await async_client.post(beacon_url(session), body, content_type="text/plain;charset=UTF-8")
        assert response.status_code == 200
        assert response.json() == {"acked": [1, 2], "errors": []}
    assert await stored(session) == [(1, "client.stopped"), (2, "client.unload")]
    session = await AvatarSession.objects.aget(pk=session.pk)
    assert (session.status, session.end_reason) == (SessionStatus.ENDED, "USER_CLOSED")


async def test_the_beacon_refuses_what_the_websocket_refuses(async_client, settings):
    settings.INGEST_MAX_MESSAGE_BYTES = 500
    session, other = await make_session(), await make_session()
    post = async_client.post
    cases = [
        (
            await post(beacon_url(session, credentials.mint(other.id)), message(item(1)), content_type="text/plain"),
            401,
            "bad_credential",
        ),
        (await post(beacon_url(AvatarSession()), message(item(1)), content_type="text/plain"), 404, "not_found"),
        (await post(beacon_url(session), "{oops", content_type="text/plain"), 400, "malformed_json"),
        (await post(beacon_url(session), json.dumps({"evts": []}), content_type="text/plain"), 400, "bad_envelope"),
        (
            await post(beacon_url(session), message(item(1, note="x" * 600)), content_type="text/plain"),
            413,
            "too_large",
        ),
    ]
    assert [(r.status_code, r.json()["error"]) for r, *_ in cases] == [(status, code) for _, status, code in cases]
    assert await stored(session) == []


async def test_the_beacon_answers_503_when_the_database_is_down(async_client):
    session = await make_session()
    async with database_refuses_events():
        response = await async_client.post(beacon_url(session), message(item(1)), content_type="text/plain")
    assert (response.status_code, response.json()["error"]) == (503, "server_busy")
    assert await stored(session) == []


# Group commit: the batches waiting in a process share one transaction.


def counting_queries(monkeypatch, queries: list):
    """Count the SQL the store and the rebuilds run (each on its own thread's connection)."""
    from django.db import connection

    def record(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    def counted(function):
        def run(*args):
            with connection.execute_wrapper(record):
                return function(*args)

        return run

    monkeypatch.setattr(event_store, "store_now", counted(event_store.store_now))
    monkeypatch.setattr(transcript_rows, "rebuild", counted(transcript_rows.rebuild))


async def test_a_burst_from_50_sessions_costs_a_handful_of_queries_in_all(monkeypatch):
    sessions = [await make_session(status=SessionStatus.ACTIVE) for _ in range(50)]
    queries = []
    counting_queries(monkeypatch, queries)
    turn = CONVERSATION[2:19]  # the opening line and the user's question, from server events
    results = await asyncio.gather(*(ingest.store_batch(s, turn) for s in sessions))
    assert all(r.acked == [i["seq"] for i in turn] for r in results)
    assert await SessionEvent.objects.acount() == 50 * len(turn)
    for s in sessions:
        await transcript_caught_up(s.pk)
    expected = [
        (s.pk, t)
        for s in sorted(sessions, key=lambda s: s.pk)
        for t in ("Hello! I'm Wayne. How can I help you today?", "What are your hours?")
    ]
    texts = [(e.session_id, e.text) async for e in TranscriptEntry.objects.order_by("session_id", "position")]
    assert texts == expected
    # One transaction stored all 850 events (4 statements); two rebuilds (32 and 18 sessions) built
    # all 50 transcripts.
    assert len(queries) <= 24, "\n".join(q[:90] for q in queries)


async def test_under_sustained_load_a_transcript_is_at_most_a_gap_behind_its_ack_and_ends_complete(monkeypatch):
    """20 conversations, each speaking a word every 0.1 s for 2.5 s. Each word acked is in the stored
    transcript within REBUILD_GAP; a transcript is rebuilt every REBUILD_EVERY, not for each word;
    once it is over every word is there."""
    sessions = [await make_session(status=SessionStatus.ACTIVE) for _ in range(20)]
    rebuilds = {s.pk: 0 for s in sessions}
    real_rebuild = transcript_rows.rebuild

    def counted(lowest, *args):
        for sid in lowest:
            rebuilds[sid] += 1
        return real_rebuild(lowest, *args)

    monkeypatch.setattr(transcript_rows, "rebuild", counted)
    words = 25
    acked_at: dict = {}  # (session id, words acked) → when the ack came
    seen_at: dict = {}  # (session id, words in the stored transcript) → when a read first saw them

    async def speak(session):
        await ingest.store_batch(session, [item(1, "avatar.speak_started", "server")])
        for seq in range(2, words + 2):
            await asyncio.sleep(0.1)
            await ingest.store_batch(session, [item(seq, "avatar.transcription.chunk", "server", text=f"w{seq}")])
            acked_at[session.pk, seq - 1] = time.monotonic()

    async def watch():
        while True:
            now = time.monotonic()
            async for e in TranscriptEntry.objects.all():
                for count in range(1, len(e.text.split()) + 1):
                    seen_at.setdefault((e.session_id, count), now)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    await asyncio.gather(*(speak(s) for s in sessions))
    elapsed = time.monotonic() - started
    for s in sessions:
        await transcript_caught_up(s.pk)
    await asyncio.sleep(0.1)  # one more look by the watcher
    watcher.cancel()
    lags = {key: seen_at.get(key, float("inf")) - at for key, at in acked_at.items()}
    # The watcher looks every 0.05 s and its read takes a moment on a loaded machine.
    assert max(lags.values()) <= transcript_catchup.REBUILD_GAP + 0.3, sorted(lags.values())[-5:]
    # One rebuild when each started, then one every REBUILD_EVERY, one when it is over.
    assert max(rebuilds.values()) <= elapsed / transcript_catchup.REBUILD_EVERY + 2, rebuilds
    said = " ".join(f"w{seq}" for seq in range(2, words + 2))
    assert [e.text async for e in TranscriptEntry.objects.order_by("session_id")] == [said] * 20


async def test_a_database_outage_mid_flush_acks_nothing_and_loses_nothing():
    sessions = [await make_session() for _ in range(10)]
    async with database_refuses_events("server closed the connection unexpectedly"):
        outcomes = await asyncio.gather(
            *(ingest.store_batch(s, [item(1), item(2)]) for s in sessions), return_exceptions=True
        )
    assert [(type(o), getattr(o, "code", None)) for o in outcomes] == [(IngestError, "server_busy")] * 10
    assert await SessionEvent.objects.acount() == 0
    # The database is back; the pages send again.
    outcomes = await asyncio.gather(*(ingest.store_batch(s, [item(1), item(2)]) for s in sessions))
    assert [o.acked for o in outcomes] == [[1, 2]] * 10
    assert await SessionEvent.objects.acount() == 20


async def test_events_stored_before_a_failure_move_the_status_when_their_batch_is_sent_again():
    session = await make_session()
    batch = [item(1, "client.started"), item(2, "client.connected"), item(3)]
    # A failure after the events were inserted and before the status moved: nothing was acked.
    await database_sync_to_async(event_store._touch_and_insert)({session.pk: batch}, timezone.now())
    assert (await AvatarSession.objects.aget(pk=session.pk)).status == SessionStatus.CREATED
    result = await ingest.store_batch(session, batch)  # the page sends the batch again
    assert result.acked == [1, 2, 3] and await stored(session) == [
        (1, "client.started"),
        (2, "client.connected"),
        (3, "client.keepalive"),
    ]
    session = await AvatarSession.objects.aget(pk=session.pk)
    assert session.status == SessionStatus.ACTIVE and session.started_at is not None


async def test_a_round_of_more_events_than_a_statement_takes_stores_each_once_and_drops_a_deleted_sessions():
    sessions = [await make_session(status=SessionStatus.ACTIVE) for _ in range(3)]
    gone = await make_session(status=SessionStatus.ACTIVE)
    await gone.adelete()  # its page still forwards
    per_session = event_store.INSERT_CHUNK // 2 + 1  # three sessions: more than two statements' worth
    batches = [(s.pk, [item(seq) for seq in range(1, per_session + 1)]) for s in [*sessions, gone]]
    touched = await database_sync_to_async(event_store.store_now)(batches)
    assert set(touched) == {s.pk for s in sessions}
    await database_sync_to_async(event_store.store_now)(batches)  # and all of it once more
    assert await SessionEvent.objects.acount() == 3 * per_session
    assert not await SessionEvent.objects.filter(session_id=gone.pk).aexists()


async def stored_transcript(session) -> list[tuple]:
    return [
        (e.speaker, e.text, e.interrupted, e.from_chunks)
        async for e in TranscriptEntry.objects.filter(session=session).order_by("position")
    ]


async def test_the_transcript_built_batch_by_batch_equals_the_full_build_and_a_late_event_rebuilds_it():
    session = await make_session()
    for event in CONVERSATION:  # one event a batch: the checkpoint moves along the conversation
        await ingest.store_batch(session, [event])
    expected = [(e["speaker"], e["text"], e["interrupted"], e["from_chunks"]) for e in transcript.build(CONVERSATION)]
    session = await transcript_caught_up(session.pk)
    assert await stored_transcript(session) == expected
    assert session.transcript_seq > 0 and session.turn_count == 7

    # A session whose events arrive out of order (a re-send after a reconnect fills a gap).
    other = await make_session()
    gap = [e for e in CONVERSATION if e["event"]["event_type"] == "user.transcription"][0]
    await ingest.store_batch(other, [e for e in CONVERSATION if e is not gap])
    assert (await transcript_caught_up(other.pk)).transcript_seq > gap["seq"]  # folded past the gap
    await ingest.store_batch(other, [gap])
    await transcript_caught_up(other.pk)
    assert await stored_transcript(other) == expected


def test_a_read_through_the_api_or_the_admin_sees_events_another_process_stored(client):
    """Events stored by another process, whose catch-up this one never hears of: the API's and the
    admin's reads bring the transcript up to date themselves."""
    session = factories.session(status=SessionStatus.ACTIVE)
    event_store.store_now([(session.pk, CONVERSATION)])
    headers = factories.bearer(factories.api_key("sessions:read"))
    answer = client.get(f"/api/v1/sessions/{session.pk}/transcript", **headers).json()
    expected = [(e["speaker"], e["text"]) for e in transcript.build(CONVERSATION)]
    assert [(e["speaker"], e["text"]) for e in answer["entries"]] == expected
    assert client.get(f"/api/v1/sessions/{session.pk}", **headers).json()["turn_count"] == 7

    other = factories.session(status=SessionStatus.ACTIVE)
    event_store.store_now([(other.pk, CONVERSATION)])
    client.force_login(factories.staff(superuser=True))
    page = client.get(f"/admin/sessions_app/avatarsession/{other.pk}/change/").content.decode()
    assert "What are your hours?" in page
    assert not AvatarSession.objects.transcript_behind().exists()


def entries_of(session) -> list[tuple]:
    return list(
        TranscriptEntry.objects.filter(session=session)
        .order_by("position")
        .values_list("position", "speaker", "text", "origin")
    )


@pytest.mark.parametrize(
    "events", [CONVERSATION, CONVERSATION[:11]], ids=["checkpoint moves", "mid-turn, no checkpoint"]
)
async def test_a_transcript_another_rebuild_wrote_between_reading_and_writing_is_planned_again(events):
    """A rebuild reads and folds outside any transaction; another process may rebuild the same session
    before it writes. It then plans again from what is stored: no entry written twice, none lost."""
    session = await make_session()
    await database_sync_to_async(event_store.store_now)([(session.pk, events)])
    lowest = {session.pk: events[0]["seq"]}

    @contextlib.contextmanager
    def another_rebuild_meanwhile():
        transcript_rows.rebuild(lowest)
        yield

    rebuilt = await database_sync_to_async(transcript_rows.rebuild)(lowest, another_rebuild_meanwhile)
    expected = [(i, e["speaker"], e["text"], "browser") for i, e in enumerate(transcript.build(events), start=1)]
    assert expected and await database_sync_to_async(entries_of)(session) == expected
    assert rebuilt[session.pk][1] == []  # the other one wrote them all: nothing changed here


async def test_utterances_reconciliation_adds_between_reading_and_writing_are_kept():
    session = await make_session()
    first, rest = CONVERSATION[:19], CONVERSATION[19:]  # up to the user's question, then the rest
    await database_sync_to_async(event_store.store_now)([(session.pk, first)])
    await database_sync_to_async(transcript_rows.rebuild)({session.pk: first[0]["seq"]})
    await database_sync_to_async(event_store.store_now)([(session.pk, rest)])
    heard = {"role": "user", "transcript": "Can I bring my dog?", "absolute_timestamp": None}

    @contextlib.contextmanager
    def reconciliation_meanwhile():
        assert lifecycle.add_missing_utterances(session.pk, [heard])[0] == 1
        yield

    await database_sync_to_async(transcript_rows.rebuild)({session.pk: rest[0]["seq"]}, reconciliation_meanwhile)
    texts = [(speaker, text, origin) for _, speaker, text, origin in await database_sync_to_async(entries_of)(session)]
    browser = [(e["speaker"], e["text"], "browser") for e in transcript.build(CONVERSATION)]
    assert ("user", "Can I bring my dog?", "liveavatar") in texts
    assert [t for t in texts if t[2] == "browser"] == browser
