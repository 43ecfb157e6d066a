"""The emulated LiveKit room of one session: the visitor, the avatar `heygen` and the agent.

One `Room` per started session lives in this process while a visitor is in it (`rooms`). The
visitor's browser reaches it through the signaling consumer (signaling.py) and one aiortc peer
connection (two on the legacy path: the room offers the second): `heygen` publishes the drawn face
and its voice (media.py), the visitor's microphone is heard and recognised (hearing.py), data
packets carry the FULL-mode commands (agent-control) and events (agent-response) of API.md
§3.3-3.4. The session ends (session.stopped, then a server leave) when its REST stop arrives
through the channel-layer group, or when the room's own timer finds a
deadline passed; then everything the room made is torn down.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
import time
import uuid

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone
from livekit.protocol import models, rtc

from . import agent
from .hearing import Heard, Hearing, load_recogniser, recognise
from .media import SIZE, FaceVideoTrack, SpeechAudioTrack, Voice, synthesize
from .models import EmulatedSession

logger = logging.getLogger(__name__)

AVATAR = "heygen"
COMMAND_TOPIC = "agent-control"
RESPONSE_TOPIC = "agent-response"
SERVER_VERSION = "1.9.0"
PING_INTERVAL_SECONDS = 5
PING_TIMEOUT_SECONDS = 15
# The agent joins a moment after the visitor, as on the real service.
AGENT_JOIN_SECONDS = 0.3
# How long a room waits for a visitor whose signal socket dropped to come back.
REJOIN_SECONDS = 20
# A full rejoin re-sends what the old connection carried this long before its loss was seen: the
# page may have closed it unread (a dead network is noticed only after the ping timeout). The page
# drops a repeated event_id.
REPLAY_SECONDS = PING_TIMEOUT_SECONDS
# How long an ended room waits for the visitor to leave by itself before it sends a leave.
LEAVE_GRACE_SECONDS = 2.0
# How often, at most, the room re-reads its session: a stop may come from a process it cannot hear.
POLL_SECONDS = 5.0

# The rooms of this process, by session id.
rooms: dict[str, Room] = {}


def room_group(session_id) -> str:
    return f"emulator-room-{session_id}"


def notify_stopped(session_id, end_reason: str):
    """Tell the session's room (in any process) that the session has ended. For sync callers."""
    async_to_sync(get_channel_layer().group_send)(
        room_group(session_id), {"type": "room.stopped", "end_reason": end_reason}
    )


def _sid(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


@database_sync_to_async
def load_session(session_id: str) -> EmulatedSession | None:
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


class Visitor:
    """The browser's participant: its signal socket, peer connection and data channel."""

    def __init__(self, identity: str, name: str, signal):
        self.identity = identity
        self.name = name
        self.sid = _sid("PA")
        self.signal = signal  # the SignalConsumer, None while the socket is down
        self.pc = None  # the connection the visitor offers on (its publisher)
        self.subscriber = None  # legacy signaling only: the connection the room offers on
        self.channel = None  # where the room's data packets go
        self.tracks = {}  # TR_sid -> TrackInfo the visitor published (its microphone)
        self.media_sids = {}  # aiortc track id -> TR_sid of heygen's tracks sent to this visitor
        self.sent = collections.deque()  # (monotonic time, data packet) sent in the last REPLAY_SECONDS

    def info(self) -> models.ParticipantInfo:
        return models.ParticipantInfo(
            sid=self.sid,
            identity=self.identity,
            name=self.name,
            state=models.ParticipantInfo.State.ACTIVE,
            kind=models.ParticipantInfo.Kind.STANDARD,
            tracks=list(self.tracks.values()),
            joined_at=int(time.time()),
            permission=models.ParticipantPermission(can_subscribe=True, can_publish=True, can_publish_data=True),
        )


class Room:
    def __init__(self, session: EmulatedSession):
        self.session = session
        self.sid = str(session.id)
        self.room_sid = _sid("RM")
        self.agent_identity = f"liveavatar-agent-{self.sid}"
        self.avatar_sid = _sid("PA")
        self.agent_sid = _sid("PA")
        self.video_sid = _sid("TR")
        self.audio_sid = _sid("TR")
        self.agent_joined = False
        self.visitor: Visitor | None = None
        self.voice = Voice()
        self.ended = False
        self.listening = False
        # The avatar hears the microphone from the start (as the real service does); stop_listening deafens it.
        self.deaf = False
        self.hearing: Hearing | None = None
        self.pushing = False
        self.ptt_text = []
        self.speech = None  # {"text", "source", "spoken", "task"} while the avatar speaks
        self.user_task = None
        self.queue = asyncio.Queue()
        self.inbox = asyncio.Queue()  # (visitor, data packet) in the order they arrived
        self.outbox = []  # data packets waiting for the visitor's data channel
        self.tasks = set()
        self.rejoin_timer = None
        self.visitor_gone = asyncio.Event()  # set when the visitor's signal socket is left or lost
        self._spawn(self._speaker())
        self._spawn(self._timer())
        self._spawn(self._reader())

    @classmethod
    def for_session(cls, session: EmulatedSession) -> Room:
        room = rooms.get(str(session.id))
        if room is None or room.ended:
            room = rooms[str(session.id)] = cls(session)
        return room

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # Participants

    def _avatar_info(self) -> models.ParticipantInfo:
        TrackInfo = models.TrackInfo
        return models.ParticipantInfo(
            sid=self.avatar_sid,
            identity=AVATAR,
            name=AVATAR,
            state=models.ParticipantInfo.State.ACTIVE,
            kind=models.ParticipantInfo.Kind.STANDARD,
            tracks=[
                TrackInfo(
                    sid=self.video_sid,
                    type=models.TrackType.VIDEO,
                    source=models.TrackSource.CAMERA,
                    name="avatar video",
                    mime_type="video/VP8",
                    width=SIZE,
                    height=SIZE,
                ),
                TrackInfo(
                    sid=self.audio_sid,
                    type=models.TrackType.AUDIO,
                    source=models.TrackSource.MICROPHONE,
                    name="avatar voice",
                    mime_type="audio/opus",
                ),
            ],
            joined_at=int(time.time()),
        )

    def _agent_info(self, state=models.ParticipantInfo.State.ACTIVE) -> models.ParticipantInfo:
        return models.ParticipantInfo(
            sid=self.agent_sid,
            identity=self.agent_identity,
            name="LiveAvatar agent",
            state=state,
            kind=models.ParticipantInfo.Kind.AGENT,
            joined_at=int(time.time()),
        )

    async def join(self, signal, identity: str, name: str, request: rtc.JoinRequest, subscriber_primary: bool = False):
        """A visitor joins (or rejoins after a lost socket): JoinResponse, then the answer to its offer.

        With `subscriber_primary` (the legacy two-connection signaling) the room sends the avatar's
        tracks and its data on a second connection that it offers itself.
        """
        if self.rejoin_timer:
            self.rejoin_timer.cancel()
            self.rejoin_timer = None
        previous = self.visitor
        if previous and previous.signal and previous.signal is not signal:
            await previous.signal.send_signal(
                rtc.SignalResponse(
                    leave=rtc.LeaveRequest(
                        action=rtc.LeaveRequest.Action.DISCONNECT, reason=models.DisconnectReason.DUPLICATE_IDENTITY
                    )
                )
            )
            await previous.signal.close()
        if previous:
            await self._close_transport(previous)
        visitor = self.visitor = Visitor(identity, name, signal)
        visitor.pc = RTCPeerConnection()
        if subscriber_primary:
            visitor.subscriber = RTCPeerConnection()
        self._watch(visitor)
        others = [self._avatar_info()] + ([self._agent_info()] if self.agent_joined else [])
        await self.send_signal(
            rtc.SignalResponse(
                join=rtc.JoinResponse(
                    room=models.Room(sid=self.room_sid, name=self.sid, creation_time=int(time.time())),
                    participant=visitor.info(),
                    other_participants=others,
                    server_version=SERVER_VERSION,
                    server_info=models.ServerInfo(
                        edition=models.ServerInfo.Edition.Standard, version=SERVER_VERSION, protocol=16
                    ),
                    subscriber_primary=subscriber_primary,
                    ping_interval=PING_INTERVAL_SECONDS,
                    ping_timeout=PING_TIMEOUT_SECONDS,
                    # aiortc cannot restart ICE: a lost socket means a full rejoin, not a resume.
                    client_configuration=models.ClientConfiguration(
                        resume_connection=models.ClientConfigSetting.DISABLED
                    ),
                )
            )
        )
        if visitor.subscriber:
            await self._offer_subscriber(visitor)
        if request.HasField("publisher_offer"):
            await self.answer(request.publisher_offer, add_media=True)
        await self._send_quality()

    def _watch(self, visitor: Visitor):
        pc = visitor.pc

        @pc.on("datachannel")
        def on_datachannel(channel):
            if channel.label != "_reliable":
                return

            @channel.on("message")
            def on_message(message):
                if isinstance(message, bytes) and visitor is self.visitor:
                    self.inbox.put_nowait((visitor, message))

            if not visitor.subscriber:  # one connection: the visitor's channel carries both ways
                self._when_open(visitor, channel)

        @pc.on("track")
        def on_track(track):
            # Every track is read, so aiortc's queue of decoded frames does not grow; the microphone is heard.
            self._spawn(self._hear(track) if track.kind == "audio" else self._drain(track))

    def _when_open(self, visitor: Visitor, channel):
        """The room's data packets go on this channel once it opens; the agent then joins."""

        def opened():
            if visitor is not self.visitor:
                return
            visitor.channel = channel
            self._flush()
            if not self.agent_joined:
                self._spawn(self._agent_joins())

        if channel.readyState == "open":
            opened()
        else:
            channel.on("open", opened)

    async def _agent_joins(self):
        await self._pause(AGENT_JOIN_SECONDS)
        if self.ended or self.agent_joined:
            return
        self.agent_joined = True
        await self.send_signal(rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=[self._agent_info()])))
        await self.queue.put((agent.opening_line(self.session.config), None, False))

    async def _drain(self, track):
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            pass

    async def _hear(self, track):
        """The visitor's microphone, heard only while the room listens (a frame not heard is only read)."""
        hearing = self.hearing = Hearing()
        try:
            while True:
                frame = await track.recv()
                if self._hears():
                    for heard in hearing.feed(frame):
                        await self._heard(heard)
        except MediaStreamError:
            pass

    def _hears(self) -> bool:
        push_to_talk = self.session.interactivity_type == "PUSH_TO_TALK"
        return not (self.ended or self.deaf or (push_to_talk and not self.pushing))

    async def _stop_hearing(self):
        """The room stops listening: an utterance going on ends here."""
        if self.hearing and (heard := self.hearing.stop()):
            await self._heard(heard)

    async def _heard(self, heard: Heard):
        if heard.kind == "started":
            self._spawn(load_recogniser())  # a room nobody speaks in never loads the model
            await self.emit("user.speak_started", None)
        else:
            await self.emit("user.speak_ended", None)
            self.user_task = self._spawn(self._transcribe(heard.speech, self.user_task))

    async def _transcribe(self, speech: bytes, previous):
        """Recognise an utterance, then (in turn with the ones before it) say what was said and answer it."""
        text = await recognise(speech)
        if previous:
            await asyncio.wait([previous])
        if not text:
            return  # a noise, not words: nothing to write down or answer
        await _record(self.session, "user", text)
        await self.emit("user.transcription", None, text=text)
        if self.session.interactivity_type == "PUSH_TO_TALK":
            self.ptt_text.append(text)  # answered on release, with the rest of the push
        else:
            await self.queue.put((agent.reply(text), None, True))

    async def answer(self, offer: rtc.SessionDescription, add_media: bool = False):
        visitor = self.visitor
        pc = visitor.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        if add_media:
            self._add_media(visitor, pc)
        await pc.setLocalDescription(await pc.createAnswer())
        sdp, mids = self._local_description(visitor, pc)
        await self.send_signal(
            rtc.SignalResponse(answer=rtc.SessionDescription(type="answer", sdp=sdp, id=offer.id, mid_to_track_id=mids))
        )

    async def _offer_subscriber(self, visitor: Visitor):
        """Legacy signaling: the room offers the avatar's tracks and its data channels."""
        pc = visitor.subscriber
        self._when_open(visitor, pc.createDataChannel("_reliable"))
        pc.createDataChannel("_lossy", ordered=False, maxRetransmits=0)
        self._add_media(visitor, pc)
        await pc.setLocalDescription(await pc.createOffer())
        sdp, mids = self._local_description(visitor, pc)
        await self.send_signal(
            rtc.SignalResponse(offer=rtc.SessionDescription(type="offer", sdp=sdp, id=1, mid_to_track_id=mids))
        )

    def _add_media(self, visitor: Visitor, pc: RTCPeerConnection):
        for track, sid in (
            (FaceVideoTrack(self.voice), self.video_sid),
            (SpeechAudioTrack(self.voice), self.audio_sid),
        ):
            pc.addTrack(track)
            visitor.media_sids[track.id] = sid

    def _local_description(self, visitor: Visitor, pc: RTCPeerConnection) -> tuple[str, dict]:
        """The local SDP with heygen's tracks named as livekit-client wants them, and their mids."""
        sdp = pc.localDescription.sdp
        mids = {}
        for transceiver in pc.getTransceivers():
            track = transceiver.sender.track
            if track and track.id in visitor.media_sids:
                sid = visitor.media_sids[track.id]
                mids[transceiver.mid] = sid
                # livekit-client takes the publisher's sid from the msid's stream part.
                sdp = _replace_msid(sdp, track.id, f"{self.avatar_sid}|{sid} {sid}")
        return sdp, mids

    async def _send_quality(self):
        if self.visitor:
            quality = rtc.ConnectionQualityInfo(
                participant_sid=self.visitor.sid, quality=models.ConnectionQuality.EXCELLENT, score=5
            )
            await self.send_signal(
                rtc.SignalResponse(connection_quality=rtc.ConnectionQualityUpdate(updates=[quality]))
            )

    async def send_signal(self, response: rtc.SignalResponse):
        signal = self.visitor and self.visitor.signal
        if signal:
            await signal.send_signal(response)

    # Signal requests from the visitor (SignalConsumer calls these)

    async def signal_request(self, signal, request: rtc.SignalRequest):
        visitor = self.visitor
        if visitor is None or visitor.signal is not signal:
            return
        kind = request.WhichOneof("message")
        if kind == "offer":
            await self.answer(request.offer)
        elif kind == "answer" and visitor.subscriber:
            await visitor.subscriber.setRemoteDescription(RTCSessionDescription(sdp=request.answer.sdp, type="answer"))
        elif kind == "trickle":
            subscriber = request.trickle.target == rtc.SignalTarget.SUBSCRIBER and visitor.subscriber
            await self._add_candidate(subscriber or visitor.pc, request.trickle.candidateInit)
        elif kind == "add_track":
            track = models.TrackInfo(
                sid=_sid("TR"),
                type=request.add_track.type,
                source=request.add_track.source,
                name=request.add_track.name,
                muted=request.add_track.muted,
            )
            visitor.tracks[track.sid] = track
            await self.send_signal(
                rtc.SignalResponse(track_published=rtc.TrackPublishedResponse(cid=request.add_track.cid, track=track))
            )
        elif kind == "mute":
            if request.mute.sid in visitor.tracks:
                visitor.tracks[request.mute.sid].muted = request.mute.muted
        elif kind == "ping_req":
            now = int(time.time() * 1000)
            await self.send_signal(
                rtc.SignalResponse(pong_resp=rtc.Pong(last_ping_timestamp=request.ping_req.timestamp, timestamp=now))
            )
        elif kind == "ping":
            await self.send_signal(rtc.SignalResponse(pong=int(time.time() * 1000)))
        elif kind == "leave":
            self.visitor_gone.set()
            await self.close(reason="visitor left")
        # subscription, track_setting, sync_state, update_layers...: nothing to do here.

    async def _add_candidate(self, pc: RTCPeerConnection, candidate_init: str):
        try:
            init = json.loads(candidate_init)
            line = init.get("candidate", "")
            if not line:
                return  # end of candidates
            candidate = candidate_from_sdp(line.split(":", 1)[1] if line.startswith("candidate:") else line)
            candidate.sdpMid = init.get("sdpMid")
            candidate.sdpMLineIndex = init.get("sdpMLineIndex")
            await pc.addIceCandidate(candidate)
        except (ValueError, KeyError, IndexError, AttributeError):
            logger.info("ignored an ICE candidate the emulator could not read")

    def signal_lost(self, signal):
        """The visitor's socket closed without a leave: wait a while for it to come back."""
        if self.visitor and self.visitor.signal is signal:
            self.visitor.signal = None
            # The client rejoins on a new peer connection: from now on events wait in the outbox,
            # after those the old connection may have lost.
            self.visitor.channel = None
            self.outbox[:0] = [packet for _, packet in self._recently_sent(self.visitor)]
            self.visitor.sent.clear()
            self.visitor_gone.set()
            if not self.ended:
                self.rejoin_timer = self._spawn(self._close_unless_rejoined())

    async def _close_unless_rejoined(self):
        await asyncio.sleep(REJOIN_SECONDS)
        if self.visitor and self.visitor.signal is None:
            self.rejoin_timer = None
            await self.close(reason="visitor did not come back")

    # Data packets

    async def _reader(self):
        while True:
            await self._data_received(*await self.inbox.get())

    async def _data_received(self, visitor: Visitor, message: bytes):
        try:
            packet = models.DataPacket.FromString(message)
        except Exception:  # noqa: BLE001 (protobuf's DecodeError has no public base to name)
            return
        # As a LiveKit server does: the sender is who the connection belongs to, not what it claims.
        packet.participant_identity = visitor.identity
        packet.participant_sid = visitor.sid
        if packet.WhichOneof("value") != "user" or packet.user.topic != COMMAND_TOPIC or self.ended:
            return
        try:
            command = json.loads(packet.user.payload)
        except ValueError:
            return
        handler = self.commands.get(command.get("event_type")) if isinstance(command, dict) else None
        if handler:
            await _touch(self.session)  # visitor activity keeps the session from idling out
            await handler(self, command)

    async def emit(self, event_type: str, source_event_id: str | None, **payload):
        event = {
            "event_id": str(uuid.uuid4()),
            "event_type": event_type,
            "session_id": self.sid,
            "source_event_id": source_event_id,
            **payload,
        }
        packet = models.DataPacket(
            kind=models.DataPacket.Kind.RELIABLE,
            participant_identity=self.agent_identity,
            participant_sid=self.agent_sid,
            user=models.UserPacket(
                participant_sid=self.agent_sid,
                participant_identity=self.agent_identity,
                payload=json.dumps(event).encode(),
                topic=RESPONSE_TOPIC,
            ),
        )
        self.outbox.append(packet.SerializeToString())
        self._flush()

    def _flush(self):
        visitor = self.visitor
        channel = visitor and visitor.channel
        while self.outbox and channel and channel.readyState == "open":
            packet = self.outbox.pop(0)
            channel.send(packet)
            visitor.sent.append((time.monotonic(), packet))
        if visitor:
            self._recently_sent(visitor)

    @staticmethod
    def _recently_sent(visitor: Visitor) -> collections.deque:
        while visitor.sent and visitor.sent[0][0] < time.monotonic() - REPLAY_SECONDS:
            visitor.sent.popleft()
        return visitor.sent

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
            self.voice.hush()
            # Recorded before the event goes out, so the transcript endpoint already holds it.
            await _record(self.session, "avatar", " ".join(speech["spoken"]))
            await self.emit("avatar.speak_ended", speech["source"])

    async def start_listening(self, command):
        self.listening = self.voice.listening = True  # no event
        self.deaf = False

    async def stop_listening(self, command):
        self.listening = self.voice.listening = False
        self.deaf = True
        await self._stop_hearing()

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
        await self._stop_hearing()
        await self.emit("user.push_to_talk_stopped", command.get("event_id"))
        self._spawn(self._answer_push(command.get("event_id"), self.user_task))

    async def user_says(self, command):
        """Test-only: the visitor says a sentence (in PUSH_TO_TALK only while pushing)."""
        text = str(command.get("text", "")).strip()
        push_to_talk = self.session.interactivity_type == "PUSH_TO_TALK"
        if not text or (push_to_talk and not self.pushing):
            return
        if push_to_talk:
            self.ptt_text.append(text)
        self.user_task = self._spawn(
            self._user_turn(text, command.get("event_id"), self.user_task, answer=not push_to_talk)
        )

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

    # The simulated avatar and agent

    def _pause(self, seconds: float):
        return asyncio.sleep(seconds / settings.EMULATOR_SPEED)

    async def _speaker(self):
        """The avatar: says queued lines one after another."""
        while True:
            text, source, think = await self.queue.get()
            if think:
                await self._pause(agent.THINKING_SECONDS)
            self.speech = {"text": text, "source": source, "spoken": []}
            self.speech["task"] = self._spawn(self._speak(self.speech))
            await asyncio.wait([self.speech["task"]])  # an interrupt cancels the task, not the speaker
            self.speech = None

    async def _speak(self, speech: dict):
        source = speech["source"]
        words = speech["text"].split()
        utterance = await synthesize(speech["text"])
        # Words are paced over the length of the speech, sped up like every emulated time.
        per_word = utterance.seconds / len(words) if utterance and words else agent.SECONDS_PER_WORD
        await self.emit("avatar.transcription", source, text=speech["text"])
        await self.emit("avatar.speak_started", source)
        self.voice.say(utterance)
        try:
            for word in words:
                await self._pause(per_word)
                await self.emit("avatar.transcription.chunk", source, text=word if not speech["spoken"] else f" {word}")
                speech["spoken"].append(word)
        finally:
            self.voice.hush()
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

    async def _answer_push(self, source: str | None, user_task):
        """Answer everything said during a push, once its last utterance is written down."""
        if user_task:
            await asyncio.wait([user_task])
        text, self.ptt_text = " ".join(self.ptt_text), []
        if text:
            await self.queue.put((agent.reply(text), source, True))

    async def _timer(self):
        """Ends the room at the session's deadline, or when someone else ended the session."""
        while True:
            session = await load_session(self.sid)
            if session is None or session.status == EmulatedSession.ENDED:
                await self.end(session.end_reason if session else "UNKNOWN")
                return
            due = session.deadline()
            wait = (due[0] - timezone.now()).total_seconds() if due else POLL_SECONDS
            await asyncio.sleep(min(max(wait, 0) + 0.01, POLL_SECONDS))

    # The end

    def stop(self, end_reason: str):
        """End the room in a task of its own, so that the caller's socket stays free to hear the leave."""
        self._spawn(self.end(end_reason))

    async def end(self, end_reason: str):
        """The session ended: say so, send the visitor a server leave, then tear the room down."""
        if self.ended:
            return
        self.ended = True
        if self.speech:
            self.speech["task"].cancel()
        self.voice.hush()
        await self.emit("session.stopped", None, end_reason=end_reason)
        # The page leaves by itself once it reads session.stopped. A leave sent at once could
        # overtake that event (the data channel and the signal socket are separate paths).
        if self.visitor and self.visitor.signal:
            try:
                await asyncio.wait_for(self.visitor_gone.wait(), LEAVE_GRACE_SECONDS)
            except TimeoutError:
                pass
        await self.send_signal(
            rtc.SignalResponse(
                update=rtc.ParticipantUpdate(participants=[self._agent_info(models.ParticipantInfo.State.DISCONNECTED)])
            )
        )
        await self.send_signal(
            rtc.SignalResponse(
                leave=rtc.LeaveRequest(
                    action=rtc.LeaveRequest.Action.DISCONNECT, reason=models.DisconnectReason.ROOM_DELETED
                )
            )
        )
        # The leave needs a moment on the wire before the sockets close.
        await asyncio.sleep(0.2)
        await self.close(reason=f"session ended ({end_reason})")

    async def close(self, reason: str):
        """Tear down everything this room made: the visitor's connection, the media, the tasks."""
        self.ended = True
        if rooms.get(self.sid) is self:
            del rooms[self.sid]
        visitor, self.visitor = self.visitor, None
        current = asyncio.current_task()
        pending = [task for task in self.tasks if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if visitor:
            await self._close_transport(visitor)
            if visitor.signal:
                await visitor.signal.close()
        logger.info("emulated room %s closed: %s", self.sid, reason)

    async def _close_transport(self, visitor: Visitor):
        for pc in (visitor.pc, visitor.subscriber):
            if pc:
                for sender in pc.getSenders():
                    if sender.track:
                        sender.track.stop()
                await pc.close()
        visitor.channel = None


def _replace_msid(sdp: str, track_id: str, msid: str) -> str:
    lines = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=msid:") and line.endswith(f" {track_id}"):
            line = f"a=msid:{msid}"
        elif line.startswith("a=ssrc:") and "msid:" in line and line.endswith(f" {track_id}"):
            line = line.split(" msid:", 1)[0] + f" msid:{msid}"
        lines.append(line)
    return "\r\n".join(lines)
