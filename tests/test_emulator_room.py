"""The emulated room: the simulated avatar and agent answer FULL-mode commands over a websocket."""

import json
import uuid

import pytest
import websockets
from channels.testing import WebsocketCommunicator
from django.conf import settings

from avatar_site.asgi import application
from sessions_app.emulator import agent
from sessions_app.liveavatar import LiveAvatarClient, get_client

FULL = {"mode": "FULL", "avatar_id": "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a", "avatar_persona": {"language": "en"}}
ORIGIN = [(b"origin", b"http://127.0.0.1")]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast(settings):
    settings.EMULATOR_SPEED = 50  # 5 ms a word


async def started_session(**config):
    client = get_client()
    token = await client.create_token({**FULL, **config})
    return client, token, await client.start(token["session_token"])


class Room:
    """The visitor's side of the room."""

    def __init__(self, communicator):
        self.ws = communicator

    async def command(self, event_type, **payload):
        event_id = str(uuid.uuid4())
        event = {"event_id": event_id, "event_type": event_type, **payload}
        await self.ws.send_to(
            text_data=json.dumps({"type": "data", "topic": "agent-control", "payload": json.dumps(event)})
        )
        return event_id

    async def frame(self):
        return json.loads(await self.ws.receive_from(timeout=3))

    async def events_until(self, last_type):
        """Agent events up to and including the first of type `last_type`."""
        events = []
        while not events or events[-1]["event_type"] != last_type:
            frame = await self.frame()
            if frame["type"] == "data":
                assert frame["topic"] == "agent-response"
                events.append(json.loads(frame["payload"]))
        return events


async def join(started, **overrides):
    communicator = WebsocketCommunicator(
        application, f"/liveavatar-emulator/rtc?access_token={started['livekit_client_token']}", headers=ORIGIN
    )
    connected, _ = await communicator.connect()
    assert connected
    room = Room(communicator)
    joined = await room.frame()
    assert joined["type"] == "joined"
    await room.events_until("avatar.speak_ended")  # the opening line
    return room, joined


async def test_it_joins_with_the_avatar_and_agent_and_speaks_the_opening_line():
    _, token, started = await started_session()
    communicator = WebsocketCommunicator(
        application, f"/liveavatar-emulator/rtc?access_token={started['livekit_client_token']}", headers=ORIGIN
    )
    await communicator.connect()
    room = Room(communicator)
    joined = await room.frame()
    assert joined["room"] == token["session_id"] and joined["identity"].startswith("visitor-")
    assert [p["identity"] for p in joined["participants"]] == ["heygen", f"liveavatar-agent-{token['session_id']}"]
    events = await room.events_until("avatar.speak_ended")
    assert events[0]["event_type"] == "avatar.transcription"
    assert events[0]["text"] == agent.CONTEXTS[0]["opening_text"]
    await communicator.disconnect()


async def test_it_speaks_text_in_order_with_the_commands_event_id():
    _, token, started = await started_session()
    room, _ = await join(started)
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
    await room.ws.disconnect()


async def test_it_cuts_speech_short_on_interrupt(settings):
    client, token, started = await started_session()
    room, _ = await join(started)
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
    await room.ws.disconnect()


async def test_it_hears_the_user_and_answers():
    client, token, started = await started_session()
    room, _ = await join(started)
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
    await room.ws.disconnect()


async def test_it_acknowledges_push_to_talk_only_in_push_to_talk_sessions():
    _, _, started = await started_session()
    room, _ = await join(started)
    await room.command("user.start_push_to_talk")
    assert [e["event_type"] for e in await room.events_until("user.push_to_talk_start_failed")]
    await room.ws.disconnect()

    _, _, started = await started_session(interactivity_type="PUSH_TO_TALK")
    room, _ = await join(started)
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
    await room.ws.disconnect()


async def test_it_refuses_a_bad_token():
    _, _, started = await started_session()
    forged = started["livekit_client_token"][:-4] + "AAAA"
    communicator = WebsocketCommunicator(application, f"/liveavatar-emulator/rtc?access_token={forged}", headers=ORIGIN)
    await communicator.connect()
    assert (await communicator.receive_output(timeout=3)) == {"type": "websocket.close", "code": 4401}


async def test_it_tells_the_room_when_the_session_is_stopped():
    client, token, started = await started_session()
    room, _ = await join(started)
    await client.stop(session_id=token["session_id"], reason="USER_CLOSED")
    events = await room.events_until("session.stopped")
    assert events[-1]["end_reason"] == "USER_CLOSED"
    frames = [await room.frame() for _ in range(3)]
    assert frames[-1] == {"type": "disconnected", "reason": "USER_CLOSED"}
    assert (await room.ws.receive_output(timeout=3))["type"] == "websocket.close"


async def test_it_ends_the_room_at_the_sandbox_deadline(settings):
    settings.EMULATOR_SPEED = 200  # a minute lasts 0.3 s
    _, _, started = await started_session(is_sandbox=True)
    room, _ = await join(started)
    events = await room.events_until("session.stopped")
    assert events[-1]["end_reason"] == "MAX_DURATION_REACHED"


async def test_it_talks_over_a_real_websocket(daphne_server):
    client = LiveAvatarClient(f"{daphne_server.url}/liveavatar-emulator", settings.EMULATOR_API_KEY)
    token = await client.create_token(FULL)
    started = await client.start(token["session_token"])
    url = f"{started['livekit_url']}?access_token={started['livekit_client_token']}"
    async with websockets.connect(url, origin=daphne_server.url) as ws:
        assert json.loads(await ws.recv())["type"] == "joined"
        command = {"event_id": "cmd-1", "event_type": "avatar.speak_text", "text": "Hi there"}
        await ws.send(json.dumps({"type": "data", "topic": "agent-control", "payload": json.dumps(command)}))
        seen = []
        while "avatar.speak_ended" not in [e["event_type"] for e in seen if e["source_event_id"] == "cmd-1"]:
            frame = json.loads(await ws.recv())
            if frame["type"] == "data":
                seen.append(json.loads(frame["payload"]))
        mine = [e["event_type"] for e in seen if e["source_event_id"] == "cmd-1"]
        assert mine[:2] == ["avatar.transcription", "avatar.speak_started"] and mine[-1] == "avatar.speak_ended"
