"""Relay a command to the page of a live session and wait for the page to confirm it.

The page owns the LiveKit room, so the server cannot publish on agent-control itself: the command
goes through the channel layer (any process) to the session's forwarding socket (IngestConsumer),
the page publishes it and answers on the same socket, and the consumer sends that answer back to
the channel this call waits on.
"""

import asyncio

from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from sessions_app import lifecycle
from sessions_app.liveavatar import LiveAvatarError
from sessions_app.models import AvatarSession, SessionStatus

from .models import Command, ControlCommand, Outcome

# Statuses in which the page has a room to publish in.
CONTROLLABLE = (SessionStatus.STARTED, SessionStatus.ACTIVE)


class ControlError(Exception):
    """The command was not carried out; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def group_name(session_id) -> str:
    """The channel-layer group of a session's forwarding sockets."""
    return f"control.{session_id}"


def page_message(command: ControlCommand) -> dict:
    """What the page is sent: never who sent it by name, only whether staff or a system did."""
    return {
        "type": "control",
        "command_id": str(command.id),
        "session_id": str(command.session_id),
        "command": command.command,
        "text": command.text,
        "sender": command.sender_kind,
    }


def _refuse_unless_live(session: AvatarSession) -> None:
    if session.status == SessionStatus.CREATED:
        raise ControlError(409, "The conversation has not started yet: nothing is there to control.")
    if session.status not in CONTROLLABLE:
        raise ControlError(409, f"The conversation is over (it is {session.get_status_display().lower()}).")
    if session.open_connections <= 0:
        raise ControlError(409, "The visitor's page is not connected: it was closed or lost its connection.")


async def send(session: AvatarSession, command: str, text: str, origin: str) -> ControlCommand:
    """Relay one command and return its stored record once the page has confirmed it.

    Raises ControlError: 409 when the session is not live or the page refused, 429 over the rate
    limit, 504 when the page did not confirm within CONTROL_CONFIRM_SECONDS. Every command that
    reached the relay is stored, whatever its outcome.
    """
    _refuse_unless_live(session)
    recent = await ControlCommand.objects.recent(session).acount()
    if recent >= settings.CONTROL_RATE_PER_MINUTE:
        raise ControlError(429, f"At most {settings.CONTROL_RATE_PER_MINUTE} commands a minute per conversation.")
    record = await ControlCommand.objects.acreate(session=session, command=command, text=text, origin=origin)
    layer = get_channel_layer()
    reply_to = await layer.new_channel()
    message = {"type": "control.command", "reply_to": reply_to, "message": page_message(record)}
    await layer.group_send(group_name(session.pk), message)
    try:
        answer = await asyncio.wait_for(layer.receive(reply_to), settings.CONTROL_CONFIRM_SECONDS)
    except TimeoutError:
        await _answered(record, Outcome.NO_ANSWER, "The visitor's page did not confirm the command in time.")
        raise ControlError(
            504,
            f"The visitor's page did not confirm within {settings.CONTROL_CONFIRM_SECONDS:g} seconds; "
            "it may have been closed or lost its connection.",
        ) from None
    if not answer.get("ok"):
        message = str(answer.get("message") or "The page refused the command.")[:500]
        await _answered(record, Outcome.REFUSED, message)
        raise ControlError(409, f"The visitor's page refused the command: {message}")
    await _answered(record, Outcome.DELIVERED, "", str(answer.get("event_id") or "")[:128])
    if command == Command.END:
        await _end(session, record)
    return record


async def _answered(record: ControlCommand, outcome: str, message: str, event_id: str = "") -> None:
    record.outcome, record.message, record.event_id, record.answered_at = outcome, message, event_id, timezone.now()
    await record.asave(update_fields=["outcome", "message", "event_id", "answered_at"])


async def _end(session: AvatarSession, record: ControlCommand) -> None:
    """The page is ending the conversation; stop it at LiveAvatar too, so that it ends even if the
    page does not get that far. The page's own stop then finds it gone, which it takes in its stride."""
    try:
        await lifecycle.stop_session(session, "USER_CLOSED", end_reason=record.end_reason, ended_by=record.origin)
    except LiveAvatarError as exc:
        record.message = f"The page ended the conversation; stopping it at LiveAvatar failed: {exc}"
        await record.asave(update_fields=["message"])
