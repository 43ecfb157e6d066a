"""The emulated LiveKit room of one session: the visitor, the avatar `heygen` and the agent.

Speaks the frame protocol of docs/ARCHITECTURE.md ("The emulated room"). The agent answers the
FULL-mode commands of API.md §3.3 with the §3.4 events, paced like speech. The session ends
(session.stopped, then close) when its REST stop arrives through the channel-layer group, or when
the room's own timer finds a deadline passed.
"""

import asyncio
import json
import uuid
from urllib.parse import parse_qs

import jwt
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone
from livekit.api import TokenVerifier

from . import agent
from .models import EmulatedSession

AVATAR = "heygen"
# How often, at most, the room re-reads its session: a stop may come from a process it cannot hear.
POLL_SECONDS = 5.0


def room_group(session_id) -> str:
    return f"emulator-room-{session_id}"


def notify_stopped(session_id, end_reason: str):
    """Tell the session's room (in any process) that the session has ended. For sync callers."""
    async_to_sync(get_channel_layer().group_send)(
        room_group(session_id), {"type": "room.stopped", "end_reason": end_reason}
    )


def _claims(query_string: bytes):
    token = parse_qs(query_string.decode()).get("access_token", [""])[0]
    try:
        claims = TokenVerifier(settings.EMULATOR_LIVEKIT_API_KEY, settings.EMULATOR_LIVEKIT_API_SECRET).verify(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    return claims if claims.video.room_join and claims.video.room else None


@database_sync_to_async
def _load(session_id: str) -> EmulatedSession | None:
    session = EmulatedSession.objects.filter(id=session_id).first()
    if session and session.end_if_due():
        notify_stopped(session.id, session.end_reason)
    return session


@database_sync_to_async
def _touch(session: EmulatedSession):
    session.touch()


@database_sync_to_async
def _record(session: EmulatedSession, role: str, text: str):
    session.record(role, text)


class RoomConsumer(AsyncWebsocketConsumer):
    # Socket lifecycle

    async def connect(self):
        # Accept first: a close before accept becomes an HTTP 403 and loses the 4401 code.
        await self.accept()
        claims = _claims(self.scope["query_string"])
        try:
            session = claims and await _load(str(uuid.UUID(claims.video.room)))
        except ValueError:
            session = None
        if not session:
            await self.close(code=4401)
            return
        self.session = session
        self.sid = str(session.id)
        self.agent_identity = f"liveavatar-agent-{self.sid}"
        if session.status != EmulatedSession.STARTED:
            await self.send_json({"type": "disconnected", "reason": session.end_reason or "UNKNOWN"})
            await self.close()
            return
        self.ended = False
        self.listening = False
        self.pushing = False
        self.ptt_text = []
        self.speech = None  # {"text", "source", "spoken", "task"} while the avatar speaks
        self.user_task = None
        self.queue = asyncio.Queue()
        await self.channel_layer.group_add(room_group(self.sid), self.channel_name)
        await self.send_json(
            {
                "type": "joined",
                "room": self.sid,
                "identity": claims.identity,
                "participants": [
                    {"identity": AVATAR, "tracks": ["video", "audio"]},
                    {"identity": self.agent_identity, "tracks": []},
                ],
            }
        )
        await self.send_json({"type": "connection_quality", "quality": "excellent"})
        self.tasks = [asyncio.create_task(self._speaker()), asyncio.create_task(self._timer())]
        await self.queue.put((agent.opening_line(session.config), None, False))

    async def disconnect(self, code):
        for task in getattr(self, "tasks", []):
            task.cancel()
        if hasattr(self, "sid"):
            await self.channel_layer.group_discard(room_group(self.sid), self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            frame = json.loads(text_data or "")
        except ValueError:
            return
        if not isinstance(frame, dict) or getattr(self, "ended", True):
            return
        if frame.get("type") == "leave":
            await self.close()
        elif frame.get("type") == "data" and frame.get("topic") == "agent-control":
            payload = frame.get("payload")
            try:
                command = json.loads(payload) if isinstance(payload, str) else payload
            except ValueError:
                return
            handler = self.commands.get(command.get("event_type")) if isinstance(command, dict) else None
            if handler:
                await _touch(self.session)  # visitor activity keeps the session from idling out
                await handler(self, command)
        # track_published / track_muted: the emulated agent does not listen to audio.

    # Commands (agent-control)

    async def speak_text(self, command):
        await self.queue.put((str(command.get("text", "")), command.get("event_id"), False))

    async def speak_response(self, command):
        await self.queue.put((agent.reply(str(command.get("text", ""))), command.get("event_id"), True))

    async def interrupt(self, command):
        while not self.queue.empty():
            self.queue.get_nowait()
        speech, self.speech = self.speech, None
        if speech:
            speech["task"].cancel()
            # Recorded before the event goes out, so the transcript endpoint already holds it.
            await _record(self.session, "avatar", " ".join(speech["spoken"]))
            await self.emit("avatar.speak_ended", speech["source"])

    async def start_listening(self, command):
        self.listening = True  # a pose change only: no event

    async def stop_listening(self, command):
        self.listening = False

    async def start_push_to_talk(self, command):
        if self.session.interactivity_type != "PUSH_TO_TALK" or self.pushing:
            await self.emit("user.push_to_talk_start_failed", command.get("event_id"))
            return
        self.pushing = True
        await self.emit("user.push_to_talk_started", command.get("event_id"))

    async def stop_push_to_talk(self, command):
        if self.session.interactivity_type != "PUSH_TO_TALK" or not self.pushing:
            await self.emit("user.push_to_talk_stop_failed", command.get("event_id"))
            return
        self.pushing = False
        await self.emit("user.push_to_talk_stopped", command.get("event_id"))
        text, self.ptt_text = " ".join(self.ptt_text), []
        if text:
            self.tasks.append(asyncio.create_task(self._answer(text, command.get("event_id"), self.user_task)))

    async def user_says(self, command):
        """Test-only: the visitor says a sentence (in PUSH_TO_TALK only while pushing)."""
        text = str(command.get("text", "")).strip()
        push_to_talk = self.session.interactivity_type == "PUSH_TO_TALK"
        if not text or (push_to_talk and not self.pushing):
            return
        if push_to_talk:
            self.ptt_text.append(text)
        self.user_task = asyncio.create_task(
            self._user_turn(text, command.get("event_id"), self.user_task, answer=not push_to_talk)
        )
        self.tasks.append(self.user_task)

    commands = {
        "avatar.speak_text": speak_text,
        "avatar.speak_response": speak_response,
        "avatar.interrupt": interrupt,
        "avatar.start_listening": start_listening,
        "avatar.stop_listening": stop_listening,
        "user.start_push_to_talk": start_push_to_talk,
        "user.stop_push_to_talk": stop_push_to_talk,
        "emulator.user_says": user_says,
    }

    # Group events

    async def room_stopped(self, message):
        await self._end(message["end_reason"])

    # The simulated participants

    async def emit(self, event_type: str, source_event_id: str | None, **payload):
        event = {
            "event_id": str(uuid.uuid4()),
            "event_type": event_type,
            "session_id": self.sid,
            "source_event_id": source_event_id,
            **payload,
        }
        await self.send_json(
            {"type": "data", "topic": "agent-response", "from": self.agent_identity, "payload": json.dumps(event)}
        )

    async def send_json(self, frame: dict):
        await self.send(text_data=json.dumps(frame))

    def _pause(self, seconds: float):
        return asyncio.sleep(seconds / settings.EMULATOR_SPEED)

    async def _speaker(self):
        """The avatar: says queued lines one after another."""
        while True:
            text, source, think = await self.queue.get()
            if think:
                await self._pause(agent.THINKING_SECONDS)
            self.speech = {"text": text, "source": source, "spoken": []}
            self.speech["task"] = asyncio.create_task(self._speak(self.speech))
            await asyncio.wait([self.speech["task"]])  # an interrupt cancels the task, not the speaker
            self.speech = None

    async def _speak(self, speech: dict):
        source = speech["source"]
        await self.emit("avatar.transcription", source, text=speech["text"])
        await self.emit("avatar.speak_started", source)
        for word in speech["text"].split():
            await self._pause(agent.SECONDS_PER_WORD)
            await self.emit("avatar.transcription.chunk", source, text=word if not speech["spoken"] else f" {word}")
            speech["spoken"].append(word)
        self.speech = None  # finished: an interrupt from here on has nothing to cut
        await _record(self.session, "avatar", speech["text"])
        await self.emit("avatar.speak_ended", source)

    async def _user_turn(self, text: str, source: str | None, previous, answer: bool):
        if previous:
            await asyncio.wait([previous])
        await self.emit("user.speak_started", source)
        words = text.split()
        for count in range(1, len(words) + 1):
            await self._pause(agent.SECONDS_PER_WORD)
            await self.emit("user.transcription.chunk", source, text=" ".join(words[:count]))
        await self.emit("user.speak_ended", source)
        await _record(self.session, "user", text)
        await self.emit("user.transcription", source, text=text)
        if answer:
            await self.queue.put((agent.reply(text), source, True))

    async def _answer(self, text: str, source: str | None, user_task):
        if user_task:
            await asyncio.wait([user_task])
        await self.queue.put((agent.reply(text), source, True))

    async def _timer(self):
        """Ends the room at the session's deadline, or when someone else ended the session."""
        while True:
            session = await _load(self.sid)
            if session is None or session.status == EmulatedSession.ENDED:
                await self._end(session.end_reason if session else "UNKNOWN")
                return
            due = session.deadline()
            wait = (due[0] - timezone.now()).total_seconds() if due else POLL_SECONDS
            await asyncio.sleep(min(max(wait, 0) + 0.01, POLL_SECONDS))

    async def _end(self, end_reason: str):
        if self.ended:
            return
        self.ended = True
        if self.speech:
            self.speech["task"].cancel()
        await self.emit("session.stopped", None, end_reason=end_reason)
        for identity in (AVATAR, self.agent_identity):
            await self.send_json({"type": "participant_left", "identity": identity})
        await self.send_json({"type": "disconnected", "reason": end_reason})
        await self.close()
