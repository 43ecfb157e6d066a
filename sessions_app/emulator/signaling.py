"""LiveKit signaling for the emulated rooms: livekit-client's v1 path (`<livekit_url>/rtc/v1`) and
the legacy two-connection path of older clients (`<livekit_url>/rtc`, protocol 16).

The access token is a real LiveKit JWT (room-join grant, room = the session). Frames are
`SignalRequest` / `SignalResponse` protobufs. On v1 the JoinRequest, with the client's first offer,
comes in the `join_request` query parameter; on the legacy path the query says only `reconnect` and
`sid`, and the room offers a subscriber connection itself. docs/ARCHITECTURE.md ("The emulated
room") has the details.
"""

from __future__ import annotations

import base64
import gzip
import uuid
from urllib.parse import parse_qs

import jwt
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from livekit.api import TokenVerifier
from livekit.protocol import models, rtc

from .models import EmulatedSession
from .room import Room, load_session, room_group


def room_claims(token: str):
    """The claims of a valid room token with a join grant, or None."""
    try:
        claims = TokenVerifier(settings.EMULATOR_LIVEKIT_API_KEY, settings.EMULATOR_LIVEKIT_API_SECRET).verify(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    return claims if claims.video.room_join and claims.video.room else None


def _join_request(value: str) -> rtc.JoinRequest | None:
    try:
        wrapped = rtc.WrappedJoinRequest.FromString(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        data = wrapped.join_request
        if wrapped.compression == rtc.WrappedJoinRequest.Compression.GZIP:
            data = gzip.decompress(data)
        return rtc.JoinRequest.FromString(data)
    except Exception:  # noqa: BLE001 (base64, gzip and protobuf each raise their own errors)
        return None


def _legacy_join_request(params: dict) -> rtc.JoinRequest:
    return rtc.JoinRequest(
        reconnect=params.get("reconnect", [""])[0] == "1", participant_sid=params.get("sid", [""])[0]
    )


class SignalConsumer(AsyncWebsocketConsumer):
    room: Room | None = None

    @property
    def legacy(self) -> bool:
        """The two-connection path (its route says so)."""
        return self.scope["url_route"]["kwargs"].get("legacy", False)

    # Socket lifecycle

    async def connect(self):
        params = parse_qs(self.scope["query_string"].decode())
        claims = room_claims(params.get("access_token", [""])[0])
        request = _legacy_join_request(params) if self.legacy else _join_request(params.get("join_request", [""])[0])
        try:
            session = claims and await load_session(str(uuid.UUID(claims.video.room)))
        except ValueError:
            session = None
        if not session or request is None:
            # Refused before the upgrade, as LiveKit does; the client then asks /validate why.
            await self.close()
            return
        await self.accept()
        if session.status != EmulatedSession.STARTED:
            await self.leave(rtc.LeaveRequest.Action.DISCONNECT, models.DisconnectReason.ROOM_DELETED)
            return
        if request.reconnect:
            # A resume needs an ICE restart, which aiortc cannot do: this leave makes livekit-client
            # restart the connection, a full join on a new peer connection.
            await self.leave(rtc.LeaveRequest.Action.RECONNECT, models.DisconnectReason.STATE_MISMATCH)
            return
        self.room = Room.for_session(session)
        await self.channel_layer.group_add(room_group(self.room.sid), self.channel_name)
        await self.room.join(
            self, claims.identity, claims.name or claims.identity, request, subscriber_primary=self.legacy
        )

    async def disconnect(self, code):
        if self.room:
            await self.channel_layer.group_discard(room_group(self.room.sid), self.channel_name)
            self.room.signal_lost(self)

    async def receive(self, text_data=None, bytes_data=None):
        if not self.room or bytes_data is None:
            return
        try:
            request = rtc.SignalRequest.FromString(bytes_data)
        except Exception:  # noqa: BLE001 (protobuf's DecodeError)
            return
        await self.room.signal_request(self, request)

    async def leave(self, action, reason):
        await self.send_signal(rtc.SignalResponse(leave=rtc.LeaveRequest(action=action, reason=reason)))
        await self.close()

    async def send_signal(self, response: rtc.SignalResponse):
        await self.send(bytes_data=response.SerializeToString())

    # Group events

    async def room_stopped(self, message):
        if self.room:
            self.room.stop(message["end_reason"])
