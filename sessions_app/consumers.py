"""Websocket consumers: event ingest from pages (ARCHITECTURE.md "Forwarding protocol"), live feed for staff."""

import json
import logging
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db.models import F

from control import relay
from operations import logs, metrics

from . import close_codes, credentials, feed, lifecycle
from .ingest import store_batch
from .models import LIVE_STATUSES, AvatarSession, SessionStatus
from .protocol import IngestError, TokenBucket, decode_message, validate_envelope


def _ends(item: dict) -> bool:
    """A stored event that may end the session (the page's, or LiveAvatar's forwarded)."""
    target = lifecycle.target_of(item)
    return target is not None and target[0] not in (SessionStatus.STARTED, SessionStatus.ACTIVE)


log = logging.getLogger(__name__)

# A connection that keeps flooding after this many rate_limited answers in a row is closed.
FLOOD_WARNINGS = 20


class NoConnectionCleanupMixin:
    """Channels runs close_old_connections() in the database thread before every handler: a thread hop
    per websocket message, queued behind whatever the database thread is doing (the ingest's writer).
    The handlers named here reach the database only through database_sync_to_async, which closes old
    connections around each call itself, so they skip it; connect and disconnect keep it."""

    no_cleanup_handlers: frozenset = frozenset()

    async def dispatch(self, message):
        if message["type"] in self.no_cleanup_handlers:
            await getattr(self, get_handler_name(message))(message)
        else:
            await super().dispatch(message)


class IngestConsumer(NoConnectionCleanupMixin, AsyncWebsocketConsumer):
    """A page's forwarding socket: its events in, and the live-control commands for its session out."""

    # receive stores through the ingest writer (database_sync_to_async); commands touch no database.
    no_cleanup_handlers = frozenset({"websocket.receive", "control.command"})
    session: AvatarSession | None = None
    told_end = False
    joined = False

    async def connect(self):
        # Accept first: a close before accept becomes an HTTP 403 and the page would never see our code.
        await self.accept()
        session_id = self.scope["url_route"]["kwargs"]["session_id"]
        credential = parse_qs(self.scope.get("query_string", b"").decode()).get("credential", [""])[0]
        if not credentials.verify(credential, session_id):
            await self.close(code=close_codes.UNAUTHORIZED)
            return
        self.session = await AvatarSession.objects.select_related("profile").filter(pk=session_id).afirst()
        if self.session is None:
            await self.close(code=close_codes.UNKNOWN_SESSION)
            return
        await self._count_connection(+1)
        logs.bind_session(session_id)
        metrics.SOCKETS_OPEN.labels("forwarding").inc()
        log.info("forwarding socket opened")
        self.bucket = TokenBucket(settings.INGEST_RATE_PER_SECOND, settings.INGEST_RATE_BURST)
        self.warnings = 0
        self.awaiting_answer: dict[str, str] = {}  # command id → the channel its sender waits on
        await self.channel_layer.group_add(relay.group_name(self.session.pk), self.channel_name)
        self.joined = True

    async def disconnect(self, code):
        if self.joined:
            await self.channel_layer.group_discard(relay.group_name(self.session.pk), self.channel_name)
        if self.session is not None:
            await self._count_connection(-1)
            metrics.SOCKETS_OPEN.labels("forwarding").dec()
            log.info("forwarding socket closed (code %s)", code)

    async def _count_connection(self, delta: int):
        # F() so that several processes serving one session's sockets never lose a count.
        await AvatarSession.objects.filter(pk=self.session.pk).aupdate(open_connections=F("open_connections") + delta)

    async def receive(self, text_data=None, bytes_data=None):
        if self.session is None:
            return
        try:
            message = decode_message(text_data if text_data is not None else bytes_data)
            if isinstance(message, dict) and message.get("type") == "control_result":
                await self._control_result(message)
                return
            items = validate_envelope(message)
        except IngestError as exc:
            await self._error(exc.code, exc.message, [])
            return
        seqs = [item["seq"] for item in items if isinstance(item, dict) and isinstance(item.get("seq"), int)]
        if not self.bucket.take(max(1, len(items))):
            self.warnings += 1
            if self.warnings > FLOOD_WARNINGS:
                await self.close(code=close_codes.FLOODING)
                return
            await self._error("rate_limited", "Too many events; slow down and send these again.", seqs)
            return
        self.warnings = 0
        try:
            result = await store_batch(self.session, items)
        except IngestError as exc:
            await self._error(exc.code, exc.message, seqs)
            return
        if result.acked:
            acked = set(result.acked)
            if not self.told_end and any(_ends(i) for i in items if isinstance(i, dict) and i.get("seq") in acked):
                await self._tell_end()
            await self.send(text_data=json.dumps({"type": "ack", "seqs": result.acked}))
        for error in result.errors:
            await self._error(error["code"], error["message"], error["seqs"])

    async def _tell_end(self):
        """Once the session has ended, tell the page why, in what we stored (a staff member or the
        server may have stopped it; LiveAvatar's own event says only what LiveAvatar was told).
        Sent before the ack, so a page that closes once all is acked has heard it."""
        ended = (
            await AvatarSession.objects.filter(pk=self.session.pk)
            .exclude(status__in=LIVE_STATUSES)
            .values("status", "end_reason")
            .afirst()
        )
        if ended:
            self.told_end = True
            await self.send(text_data=json.dumps({"type": "session.ended", **ended}))

    async def _error(self, code: str, message: str, seqs: list[int]):
        metrics.EVENTS_REJECTED.labels(code).inc(len(seqs) or 1)
        await self.send(text_data=json.dumps({"type": "error", "code": code, "message": message, "seqs": seqs}))

    # Live control (control/relay.py)

    async def control_command(self, event):
        self.awaiting_answer[event["message"]["command_id"]] = event["reply_to"]
        await self.send(text_data=json.dumps(event["message"]))

    async def _control_result(self, message: dict):
        # Only an answer to a command this socket delivered goes anywhere.
        reply_to = self.awaiting_answer.pop(str(message.get("command_id")), None)
        if reply_to is None:
            return
        answer = {
            "ok": message.get("ok") is True,
            "event_id": message.get("event_id"),
            "message": message.get("message"),
        }
        await self.channel_layer.send(reply_to, {"type": "control.result", **answer})


class DashboardConsumer(NoConnectionCleanupMixin, AsyncWebsocketConsumer):
    """Staff only (Django session). A snapshot of live sessions, then every change the ingest broadcasts."""

    # The feed's frames touch no database; receive ignores what staff send.
    no_cleanup_handlers = frozenset({"websocket.receive", "dashboard.messages"})

    joined = False

    async def connect(self):
        await self.accept()
        user = self.scope.get("user")
        if not (user and user.is_active and user.is_staff):
            await self.close(code=close_codes.FORBIDDEN)
            return
        await self.channel_layer.group_add(feed.GROUP, self.channel_name)
        self.joined = True
        metrics.SOCKETS_OPEN.labels("dashboard").inc()
        sessions = await database_sync_to_async(feed.snapshot)()
        await self.send(text_data=json.dumps({"type": "snapshot", "sessions": sessions}))

    async def disconnect(self, code):
        if self.joined:
            await self.channel_layer.group_discard(feed.GROUP, self.channel_name)
            metrics.SOCKETS_OPEN.labels("dashboard").dec()

    async def receive(self, text_data=None, bytes_data=None):
        pass  # the feed is one-way

    async def dashboard_messages(self, event):
        for message in event["messages"]:  # all a flush of the ingest stored, one frame each
            await self.send(text_data=json.dumps(message))
