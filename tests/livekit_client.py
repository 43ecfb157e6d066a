"""A small LiveKit client for tests: v1 signaling and one aiortc peer connection, as livekit-client joins.

It joins the emulated room in process (Channels' WebsocketCommunicator on the site's ASGI app) over
real WebRTC: ICE, DTLS, the `_reliable` data channel and the avatar's media tracks.
"""

import asyncio
import base64
import json
import uuid
from urllib.parse import urlencode, urlsplit

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from channels.testing import WebsocketCommunicator
from livekit.protocol import models, rtc

from avatar_site.asgi import application

ORIGIN = [(b"origin", b"http://127.0.0.1")]
TIMEOUT = 5


def join_path(livekit_url: str, token: str, offer_sdp: str = "", offer_id: int = 1, reconnect_sid: str = "") -> str:
    """The v1 join; with `reconnect_sid`, the resume of that participant (no offer, as livekit-client sends it)."""
    if reconnect_sid:
        join = rtc.JoinRequest(reconnect=True, participant_sid=reconnect_sid)
    else:
        join = rtc.JoinRequest(publisher_offer=rtc.SessionDescription(type="offer", sdp=offer_sdp, id=offer_id))
    wrapped = rtc.WrappedJoinRequest(join_request=join.SerializeToString())
    query = urlencode(
        {
            "access_token": token,
            "join_request": base64.urlsafe_b64encode(wrapped.SerializeToString()).decode().rstrip("="),
        }
    )
    return f"{urlsplit(livekit_url).path}/rtc/v1?{query}"


class LoopedMicrophone(MediaStreamTrack):
    """A microphone saying a WAV file over and over, in real time; counts the seconds it has sent."""

    kind = "audio"

    def __init__(self, path):
        super().__init__()
        self.player = MediaPlayer(str(path), loop=True)
        self.seconds = 0.0

    async def recv(self):
        frame = await self.player.audio.recv()
        self.seconds += frame.samples / frame.sample_rate
        return frame

    def stop(self):
        super().stop()
        self.player.audio.stop()


class TestClient:
    __test__ = False  # not a test class, despite its name

    def __init__(self, started: dict, microphone=None):
        self.started = started
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("_reliable")
        if microphone:
            self.pc.addTrack(microphone)
        else:
            self.pc.addTransceiver("audio", direction="sendrecv")
        self.pc.addTransceiver("video", direction="recvonly")
        self.signals: asyncio.Queue = asyncio.Queue()
        self.data: asyncio.Queue = asyncio.Queue()
        self.tracks = []
        self.channel_open = asyncio.Event()
        self.channel.on("open", self.channel_open.set)
        self.channel.on("message", lambda message: self.data.put_nowait(models.DataPacket.FromString(message)))
        self.pc.on("track", self.tracks.append)
        self.ws = None
        self.reader = None

    async def connect(self, token: str | None = None):
        """Join: the JoinResponse, then the answer to the offer in the join request."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        path = join_path(
            self.started["livekit_url"], token or self.started["livekit_client_token"], self.pc.localDescription.sdp
        )
        self.ws = WebsocketCommunicator(application, path, headers=ORIGIN)
        connected, _ = await self.ws.connect(timeout=TIMEOUT)
        assert connected, "the signal socket was refused"
        self.reader = asyncio.create_task(self._read())
        join = await self.next_signal("join")
        answer = await self.next_signal("answer")
        assert answer.id == 1
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        await asyncio.wait_for(self.channel_open.wait(), TIMEOUT)
        return join, answer

    async def _read(self):
        while True:
            output = await self.ws.receive_output(timeout=3600)
            if output["type"] == "websocket.close":
                self.signals.put_nowait(("closed", output.get("code")))
                return
            response = rtc.SignalResponse.FromString(output["bytes"])
            self.signals.put_nowait((response.WhichOneof("message"), response))

    async def next_signal(self, kind: str, timeout: float = TIMEOUT):
        """The next signal response of this kind (others before it are skipped)."""
        while True:
            got, response = await asyncio.wait_for(self.signals.get(), timeout)
            if got == kind:
                return response if got == "closed" else getattr(response, kind)
            if got == "closed":
                raise AssertionError(f"the signal socket closed while waiting for {kind}")

    async def send_signal(self, **request):
        await self.ws.send_to(bytes_data=rtc.SignalRequest(**request).SerializeToString())

    async def command(self, event_type: str, **fields) -> str:
        event_id = str(uuid.uuid4())
        payload = json.dumps({"event_id": event_id, "event_type": event_type, **fields}).encode()
        packet = models.DataPacket(
            kind=models.DataPacket.Kind.RELIABLE, user=models.UserPacket(payload=payload, topic="agent-control")
        )
        self.channel.send(packet.SerializeToString())
        return event_id

    async def event(self, timeout: float = TIMEOUT) -> tuple[dict, models.DataPacket]:
        packet = await asyncio.wait_for(self.data.get(), timeout)
        assert packet.user.topic == "agent-response"
        return json.loads(packet.user.payload), packet

    async def events_until(self, last_type: str, timeout: float = TIMEOUT) -> list[dict]:
        """Agent events up to and including the first of type `last_type`."""
        events = []
        while not events or events[-1]["event_type"] != last_type:
            events.append((await self.event(timeout))[0])
        return events

    def pending_events(self) -> list[dict]:
        """Agent events received and not read yet."""
        events = []
        while not self.data.empty():
            events.append(json.loads(self.data.get_nowait().user.payload))
        return events

    async def close(self):
        if self.reader:
            self.reader.cancel()
        await self.pc.close()
        if self.ws:
            await self.ws.disconnect()


class LegacyTestClient(TestClient):
    """The legacy two-connection signaling (`/rtc`, protocol 16) of livekit-client before 2.16: the room
    offers the subscriber connection (its tracks and the data it sends); the client offers the publisher
    connection (the data it sends)."""

    __test__ = False

    def __init__(self, started: dict):
        super().__init__(started)
        self.subscriber = RTCPeerConnection()
        self.subscriber_open = asyncio.Event()
        self.subscriber.on("track", self.tracks.append)
        self.subscriber.on("datachannel", self._subscriber_channel)

    def _subscriber_channel(self, channel):
        if channel.label != "_reliable":
            return
        channel.on("message", lambda message: self.data.put_nowait(models.DataPacket.FromString(message)))
        if channel.readyState == "open":
            self.subscriber_open.set()
        else:
            channel.on("open", self.subscriber_open.set)

    async def connect(self, token: str | None = None):
        """Join: the JoinResponse and the room's offer, which is answered; then the publisher's offer."""
        query = urlencode({"access_token": token or self.started["livekit_client_token"], "protocol": 16})
        self.ws = WebsocketCommunicator(
            application, f"{urlsplit(self.started['livekit_url']).path}/rtc?{query}", ORIGIN
        )
        connected, _ = await self.ws.connect(timeout=TIMEOUT)
        assert connected, "the signal socket was refused"
        self.reader = asyncio.create_task(self._read())
        join = await self.next_signal("join")
        offer = await self.next_signal("offer")
        await self.subscriber.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        await self.subscriber.setLocalDescription(await self.subscriber.createAnswer())
        sdp = self.subscriber.localDescription.sdp
        await self.send_signal(answer=rtc.SessionDescription(type="answer", sdp=sdp, id=offer.id))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.send_signal(offer=rtc.SessionDescription(type="offer", sdp=self.pc.localDescription.sdp, id=1))
        answer = await self.next_signal("answer")
        assert answer.id == 1
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        await asyncio.wait_for(asyncio.gather(self.channel_open.wait(), self.subscriber_open.wait()), TIMEOUT)
        return join, offer

    async def close(self):
        await self.subscriber.close()
        await super().close()
