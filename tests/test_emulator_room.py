"""The emulated LiveKit room: signaling, WebRTC and the simulated avatar and agent answering
FULL-mode commands, seen from a LiveKit client (tests/livekit_client.py) joining in process."""

import asyncio
import base64
import gzip

import httpx
import pytest
from channels.testing import WebsocketCommunicator
from livekit.protocol import models, rtc

from avatar_site.asgi import application
from sessions_app.emulator import agent
from sessions_app.emulator.room import rooms
from sessions_app.liveavatar import get_client
from tests.livekit_client import ORIGIN, LegacyTestClient, LoopedMicrophone, TestClient, join_path
from tests.speech import speech_wav

FULL = {"mode": "FULL", "avatar_id": "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a", "avatar_persona": {"language": "en"}}

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast(settings):
    settings.EMULATOR_SPEED = 50


async def started_session(**config):
    client = get_client()
    token = await client.create_token({**FULL, **config})
    return client, token, await client.start(token["session_token"])


async def join(started):
    room = TestClient(started)
    await room.connect()
    await room.events_until("avatar.speak_ended")  # the opening line
    return room


async def test_it_joins_with_the_avatar_and_agent_and_speaks_the_opening_line():
    _, token, started = await started_session()
    assert started["livekit_url"].endswith("/liveavatar-emulator")
    room = TestClient(started)
    joined, answer = await room.connect()
    assert joined.room.name == token["session_id"] and joined.participant.identity.startswith("visitor-")
    assert joined.server_info.version and joined.ping_interval > 0 and not joined.subscriber_primary
    (avatar,) = joined.other_participants
    assert avatar.identity == "heygen"
    assert {t.type for t in avatar.tracks} == {models.TrackType.VIDEO, models.TrackType.AUDIO}
    # Each of the avatar's tracks is named in the answer as livekit-client wants it: "<PA>|<TR> <TR>".
    assert set(answer.mid_to_track_id.values()) == {t.sid for t in avatar.tracks}
    for track in avatar.tracks:
        assert f"a=msid:{avatar.sid}|{track.sid} {track.sid}" in answer.sdp
    # The agent joins a moment later.
    update = await room.next_signal("update")
    (agent_info,) = update.participants
    assert agent_info.identity == f"liveavatar-agent-{token['session_id']}"
    assert agent_info.kind == models.ParticipantInfo.Kind.AGENT
    event, packet = await room.event()
    assert (event["event_type"], event["text"]) == ("avatar.transcription", agent.CONTEXTS[0]["opening_text"])
    assert (packet.participant_identity, packet.participant_sid) == (agent_info.identity, agent_info.sid)
    # And the avatar's video and voice arrive over WebRTC.
    await asyncio.sleep(0.3)
    assert {t.kind for t in room.tracks} == {"audio", "video"}
    frame = await asyncio.wait_for(next(t for t in room.tracks if t.kind == "video").recv(), 5)
    assert frame.width > 0
    await room.close()


async def test_it_answers_pings_and_each_offer_with_its_id():
    _, _, started = await started_session()
    room = await join(started)
    await room.send_signal(ping_req=rtc.Ping(timestamp=1234, rtt=5))
    pong = await room.next_signal("pong_resp")
    assert pong.last_ping_timestamp == 1234 and pong.timestamp > 0
    # The visitor publishes its microphone: track_published, then a renegotiation with a new offer id.
    await room.send_signal(
        add_track=rtc.AddTrackRequest(cid="mic-1", type=models.TrackType.AUDIO, source=models.TrackSource.MICROPHONE)
    )
    published = await room.next_signal("track_published")
    assert published.cid == "mic-1" and published.track.sid.startswith("TR_")
    await room.pc.setLocalDescription(await room.pc.createOffer())
    await room.send_signal(offer=rtc.SessionDescription(type="offer", sdp=room.pc.localDescription.sdp, id=2))
    assert (await room.next_signal("answer")).id == 2
    await room.close()


async def test_it_reads_a_gzipped_join_request():
    _, _, started = await started_session()
    room = TestClient(started)
    await room.pc.setLocalDescription(await room.pc.createOffer())
    join = rtc.JoinRequest(publisher_offer=rtc.SessionDescription(type="offer", sdp=room.pc.localDescription.sdp, id=7))
    wrapped = rtc.WrappedJoinRequest(
        join_request=gzip.compress(join.SerializeToString()), compression=rtc.WrappedJoinRequest.Compression.GZIP
    )
    value = base64.urlsafe_b64encode(wrapped.SerializeToString()).decode().rstrip("=")
    room.ws = WebsocketCommunicator(
        application,
        f"/liveavatar-emulator/rtc/v1?access_token={started['livekit_client_token']}&join_request={value}",
        headers=ORIGIN,
    )
    assert (await room.ws.connect())[0]
    room.reader = asyncio.create_task(room._read())
    await room.next_signal("join")
    assert (await room.next_signal("answer")).id == 7
    await room.close()


async def test_it_speaks_text_in_order_with_the_commands_event_id():
    _, token, started = await started_session()
    room = await join(started)
    event_id = await room.command("avatar.speak_text", text="Good morning to you")
    events = await room.events_until("avatar.speak_ended")
    types = [e["event_type"] for e in events]
    assert types == ["avatar.transcription", "avatar.speak_started"] + ["avatar.transcription.chunk"] * 4 + [
        "avatar.speak_ended"
    ]
    assert events[0]["text"] == "Good morning to you"
    assert "".join(e["text"] for e in events[2:6]) == "Good morning to you"
    assert {e["source_event_id"] for e in events} == {event_id}
    assert {e["session_id"] for e in events} == {token["session_id"]}
    await room.close()


async def test_it_cuts_speech_short_on_interrupt(settings):
    client, token, started = await started_session()
    room = await join(started)
    settings.EMULATOR_SPEED = 2  # 125 ms a word: slow enough to interrupt
    event_id = await room.command("avatar.speak_text", text="one two three four five six seven eight nine ten")
    await room.events_until("avatar.transcription.chunk")
    await room.command("avatar.interrupt")
    events = await room.events_until("avatar.speak_ended")
    assert len([e for e in events if e["event_type"] == "avatar.transcription.chunk"]) < 3
    assert events[-1]["source_event_id"] == event_id
    transcript = (await client.transcript(token["session_id"]))["transcript_data"]
    assert transcript[-1]["role"] == "avatar" and transcript[-1]["transcript"].startswith("one")
    assert transcript[-1]["transcript"] != "one two three four five six seven eight nine ten"
    await room.close()


async def test_it_hears_the_user_and_answers():
    client, token, started = await started_session()
    room = await join(started)
    event_id = await room.command("emulator.user_says", text="hello what are your hours")
    events = await room.events_until("avatar.speak_ended")
    assert [e["event_type"] for e in events if not e["event_type"].endswith(".chunk")] == [
        "user.speak_started",
        "user.speak_ended",
        "user.transcription",
        "avatar.transcription",
        "avatar.speak_started",
        "avatar.speak_ended",
    ]
    chunks = [e["text"] for e in events if e["event_type"] == "user.transcription.chunk"]
    assert chunks[0] == "hello" and chunks[-1] == "hello what are your hours"
    reply = next(e for e in events if e["event_type"] == "avatar.transcription")
    assert reply["text"] == agent.reply("hello what are your hours")
    assert reply["source_event_id"] == event_id
    roles = [(e["role"], e["transcript"]) for e in (await client.transcript(token["session_id"]))["transcript_data"]]
    assert roles[-2:] == [("user", "hello what are your hours"), ("avatar", reply["text"])]
    await room.close()


async def test_it_hears_the_microphone_only_while_listening(tmp_path):
    wav = tmp_path / "visitor.wav"
    loop = 0.5 + speech_wav(wav, before=0.5, after=1.5) + 1.5
    microphone = LoopedMicrophone(wav)
    _, _, started = await started_session()
    room = TestClient(started, microphone)
    await room.connect()
    await room.command("avatar.stop_listening")
    await room.events_until("avatar.speak_ended")  # the opening line
    heard_from = microphone.seconds
    while microphone.seconds < heard_from + 1.5 * loop:  # the whole phrase at least once, not listened to
        await asyncio.sleep(0.05)
    assert not [e for e in room.pending_events() if e["event_type"].startswith("user.")]

    await room.command("avatar.start_listening")
    events = await room.events_until("user.transcription", timeout=3 * loop)
    assert [e["event_type"] for e in events] == ["user.speak_started", "user.speak_ended", "user.transcription"]
    assert "open" in events[-1]["text"].split()
    answer = await room.events_until("avatar.transcription")
    assert answer[-1]["text"] == agent.reply(events[-1]["text"])
    await room.close()


async def test_it_acknowledges_push_to_talk_only_in_push_to_talk_sessions():
    _, _, started = await started_session()
    room = await join(started)
    await room.command("user.start_push_to_talk")
    assert [e["event_type"] for e in await room.events_until("user.push_to_talk_start_failed")]
    await room.close()

    _, _, started = await started_session(interactivity_type="PUSH_TO_TALK")
    room = await join(started)
    await room.command("user.stop_push_to_talk")
    await room.events_until("user.push_to_talk_stop_failed")
    await room.command("user.start_push_to_talk")
    await room.events_until("user.push_to_talk_started")
    await room.command("emulator.user_says", text="bye")
    stop_id = await room.command("user.stop_push_to_talk")
    events = await room.events_until("avatar.speak_ended")
    assert "user.push_to_talk_stopped" in [e["event_type"] for e in events]
    reply = next(e for e in events if e["event_type"] == "avatar.transcription")
    assert reply["text"] == agent.reply("bye") and reply["source_event_id"] == stop_id
    await room.close()


async def test_it_refuses_a_bad_token_and_says_why():
    _, _, started = await started_session()
    forged = started["livekit_client_token"][:-4] + "AAAA"
    communicator = WebsocketCommunicator(application, join_path(started["livekit_url"], forged), headers=ORIGIN)
    assert not (await communicator.connect())[0]
    # What livekit-client asks after a refused upgrade.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://127.0.0.1") as http:
        refused = await http.get("/liveavatar-emulator/rtc/v1/validate", params={"access_token": forged})
        valid = await http.get(
            "/liveavatar-emulator/rtc/v1/validate", params={"access_token": started["livekit_client_token"]}
        )
        legacy = await http.get("/liveavatar-emulator/rtc/validate", params={"access_token": forged})
    assert refused.status_code == 401 and valid.status_code == 200 and legacy.status_code == 401


async def test_it_says_session_stopped_then_leaves_with_a_reason_and_tears_down():
    client, token, started = await started_session()
    room = await join(started)
    assert token["session_id"] in rooms
    await client.stop(session_id=token["session_id"], reason="USER_CLOSED")
    events = await room.events_until("session.stopped")
    assert events[-1]["end_reason"] == "USER_CLOSED"
    update = await room.next_signal("update")
    while update.participants[0].state != models.ParticipantInfo.State.DISCONNECTED:
        update = await room.next_signal("update")
    assert update.participants[0].identity == f"liveavatar-agent-{token['session_id']}"
    leave = await room.next_signal("leave")
    assert (leave.action, leave.reason) == (rtc.LeaveRequest.Action.DISCONNECT, models.DisconnectReason.ROOM_DELETED)
    await room.next_signal("closed")
    # Nothing of the room is left: no room, no task of it, its peer connection closed.
    assert token["session_id"] not in rooms
    await asyncio.sleep(0.1)
    leftover = [t for t in asyncio.all_tasks() if "emulator" in repr(t.get_coro())]
    assert leftover == []
    await room.close()


async def test_a_visitor_leaving_tears_the_room_down():
    _, token, started = await started_session()
    room = await join(started)
    server_room = rooms[token["session_id"]]
    pc = server_room.visitor.pc
    await room.send_signal(leave=rtc.LeaveRequest(reason=models.DisconnectReason.CLIENT_INITIATED))
    await room.next_signal("closed")
    assert token["session_id"] not in rooms and pc.connectionState == "closed"
    assert all(task.done() for task in server_room.tasks)
    await room.close()


async def test_several_rooms_live_at_once_without_mixing():
    joined = []
    for _ in range(3):
        _, token, started = await started_session()
        joined.append((token["session_id"], await join(started)))
    for n, (_, room) in enumerate(joined):
        await room.command("avatar.speak_text", text=f"room number {n}")
    for n, (session_id, room) in enumerate(joined):
        events = await room.events_until("avatar.speak_ended")
        assert events[0]["text"] == f"room number {n}"
        assert {e["session_id"] for e in events} == {session_id}
    assert len({id(rooms[session_id]) for session_id, _ in joined}) == 3
    for _, room in joined:
        await room.close()


async def test_it_ends_the_room_at_the_sandbox_deadline(settings):
    settings.EMULATOR_SPEED = 200  # a minute lasts 0.3 s
    _, _, started = await started_session(is_sandbox=True)
    room = TestClient(started)
    await room.connect()
    events = await room.events_until("session.stopped")
    assert events[-1]["end_reason"] == "MAX_DURATION_REACHED"
    await room.close()


async def test_a_dropped_signal_socket_makes_the_client_rejoin_and_loses_no_event(settings):
    _, token, started = await started_session()
    room = await join(started)
    joined_sid = rooms[token["session_id"]].visitor.sid
    settings.EMULATOR_SPEED = 2  # 125 ms a word: the socket drops mid-sentence
    text = "one two three four five six seven eight nine ten"
    event_id = await room.command("avatar.speak_text", text=text)
    before = await room.events_until("avatar.transcription.chunk")
    await room.ws.disconnect()  # the signal socket drops; the peer connection is still up
    server_room = rooms[token["session_id"]]
    while not server_room.outbox:  # the avatar speaks on while the visitor is away
        await asyncio.sleep(0.01)
    while not room.data.empty():
        before.append((await room.event())[0])

    # livekit-client first tries to resume: aiortc cannot restart ICE, so the room says to rejoin in full.
    path = join_path(started["livekit_url"], started["livekit_client_token"], reconnect_sid=joined_sid)
    resume = WebsocketCommunicator(application, path, ORIGIN)
    assert (await resume.connect())[0]
    leave = rtc.SignalResponse.FromString((await resume.receive_output())["bytes"]).leave
    assert (leave.action, leave.reason) == (rtc.LeaveRequest.Action.RECONNECT, models.DisconnectReason.STATE_MISMATCH)
    assert (await resume.receive_output())["type"] == "websocket.close"

    rejoined = TestClient(started)
    joined, _ = await rejoined.connect()
    assert {p.identity for p in joined.other_participants} == {"heygen", f"liveavatar-agent-{token['session_id']}"}
    after = []  # the replay may begin with the opening line's last events
    while not after or (after[-1]["event_type"], after[-1]["source_event_id"]) != ("avatar.speak_ended", event_id):
        after.append((await rejoined.event())[0])
    # Nothing is missing: each word's chunk arrived once the repeats are dropped by event_id.
    seen = {}
    for event in before + after:
        if event["source_event_id"] == event_id:
            seen.setdefault(event["event_id"], event)
    assert [e["event_type"] for e in seen.values()] == ["avatar.transcription", "avatar.speak_started"] + [
        "avatar.transcription.chunk"
    ] * 10 + ["avatar.speak_ended"]
    assert "".join(e["text"] for e in seen.values() if e["event_type"] == "avatar.transcription.chunk") == text
    # What the old connection carried just before is sent again (the client may have closed it
    # unread), after it what the room said while the socket was down.
    before_ids, after_ids = {e["event_id"] for e in before}, {e["event_id"] for e in after}
    assert before_ids < after_ids
    # The conversation goes on over the new connection.
    await rejoined.command("avatar.speak_text", text="still here")
    assert (await rejoined.events_until("avatar.speak_ended"))[0]["text"] == "still here"
    await room.close()
    await rejoined.close()


async def test_older_clients_join_on_two_peer_connections():
    _, token, started = await started_session()
    room = LegacyTestClient(started)
    joined, offer = await room.connect()
    assert joined.subscriber_primary and joined.participant.identity.startswith("visitor-")
    (avatar,) = joined.other_participants
    # The room's offer carries heygen's tracks, named as for v1 clients.
    assert set(offer.mid_to_track_id.values()) == {t.sid for t in avatar.tracks}
    for track in avatar.tracks:
        assert f"a=msid:{avatar.sid}|{track.sid} {track.sid}" in offer.sdp
    update = await room.next_signal("update")
    assert update.participants[0].identity == f"liveavatar-agent-{token['session_id']}"
    # The room speaks on the subscriber connection; commands come on the publisher connection.
    assert (await room.events_until("avatar.speak_ended"))[0]["text"] == agent.CONTEXTS[0]["opening_text"]
    event_id = await room.command("avatar.speak_text", text="two connections")
    events = await room.events_until("avatar.speak_ended")
    assert events[0]["text"] == "two connections" and {e["source_event_id"] for e in events} == {event_id}
    assert {t.kind for t in room.tracks} == {"audio", "video"}
    frame = await asyncio.wait_for(next(t for t in room.tracks if t.kind == "video").recv(), 5)
    assert frame.width > 0
    server_room = rooms[token["session_id"]]
    pcs = (server_room.visitor.pc, server_room.visitor.subscriber)
    await room.send_signal(leave=rtc.LeaveRequest(reason=models.DisconnectReason.CLIENT_INITIATED))
    await room.next_signal("closed")
    assert token["session_id"] not in rooms and {pc.connectionState for pc in pcs} == {"closed"}
    await room.close()
