"""POST /api/v1/sessions/{id}/commands: staff (the dashboard) and other systems drive a live conversation."""

import re
import uuid
from typing import Annotated, Literal

from django.conf import settings
from django.shortcuts import aget_object_or_404
from ninja import Field, Router, Schema, Status
from pydantic import BeforeValidator, ConfigDict

from sessions_app.api.auth import CONTROL, caller, requires
from sessions_app.api.schemas import ErrorOut
from sessions_app.models import AvatarSession

from . import relay
from .models import Command, Outcome

PERMISSION = "sessions_app.control_session"
# The error codes of a command that was not carried out, by status.
ERROR_CODES = {409: "not_live", 429: "throttled", 504: "page_timeout"}

router = Router(tags=["control"])


# What says nothing: NUL, and every character Python, JSON Schema (ECMAScript) or pydantic (Rust)
# takes for white space, spelled out because their `\s` differ (Python's has \x1c-\x1f, ECMAScript's \ufeff).
BLANK = r"\x00\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_SAYS_SOMETHING = re.compile(f"[^{BLANK}]")


def _something_to_say(value):
    # Before the pattern below, whose own message would only quote the pattern.
    if isinstance(value, str) and not _SAYS_SOMETHING.search(value):
        raise ValueError("text must say something: it is empty or only spaces")
    return value


class SpeakIn(Schema):
    model_config = ConfigDict(extra="forbid")

    command: Literal["speak_text", "speak_response"] = Field(
        description="speak_text: the avatar says the text word for word; speak_response: it answers the text."
    )
    text: Annotated[str, BeforeValidator(_something_to_say)] = Field(
        min_length=1,
        max_length=settings.CONTROL_MAX_TEXT_CHARS,
        # Something to say (not only spaces), and no NUL: PostgreSQL refuses it in text.
        pattern=rf"^[^\x00]*[^{BLANK}][^\x00]*$",
        description=f"At most {settings.CONTROL_MAX_TEXT_CHARS} characters.",
    )


class ActIn(Schema):
    model_config = ConfigDict(extra="forbid")

    command: Literal["interrupt", "start_listening", "stop_listening", "end"] = Field(
        description="end: end the conversation (the visitor is told staff or the site ended it)."
    )


CommandIn = Annotated[SpeakIn | ActIn, Field(discriminator="command")]


class CommandOut(Schema):
    command_id: uuid.UUID
    command: Command
    event_id: str = Field(description="The event_id the page published the command with on agent-control.")
    outcome: Outcome
    message: str = Field(description="What happened, in words.")


@router.post(
    "/sessions/{session_id}/commands",
    response={202: CommandOut, **{code: ErrorOut for code in (400, 401, 403, 404, 409, 422, 429, 504)}},
    auth=requires(CONTROL, permission=PERMISSION),
    url_name="send_command",
    summary="Send a command to a live conversation, through the visitor's page",
    description="Answers 202 once the page has published the command; 409 when the conversation is not live "
    "(or its page refused), 504 when the page did not confirm within a few seconds. Staff need the "
    f"{PERMISSION} permission, API keys the {CONTROL} scope.",
)
async def send_command(request, session_id: uuid.UUID, body: CommandIn):
    session = await aget_object_or_404(AvatarSession, pk=session_id)
    try:
        text = body.text.strip() if isinstance(body, SpeakIn) else ""
        record = await relay.send(session, body.command, text, caller(request.auth))
    except relay.ControlError as exc:
        return Status(exc.status, {"error": ERROR_CODES[exc.status], "message": exc.message})
    words = "The page published the command." if not record.message else record.message
    return Status(
        202,
        {
            "command_id": record.id,
            "command": record.command,
            "event_id": record.event_id,
            "outcome": record.outcome,
            "message": words,
        },
    )
