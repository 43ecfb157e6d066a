"""Request and response shapes of the REST API; the OpenAPI document is generated from these."""

import datetime as dt
import re
import uuid
from typing import Annotated, Literal

from annotated_types import Interval
from django.conf import settings
from ninja import Field, Schema
from ninja.pagination import PageNumberPagination
from pydantic import BeforeValidator, ConfigDict, StrictBool, field_validator

from ..models import SessionStatus
from ..schemas import TranscriptEntryOut


class ErrorOut(Schema):
    error: str = Field(description="A stable code, e.g. not_found, unauthorized, validation_error.")
    message: str = Field(description="What went wrong, in words.")


ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _iso_only(value):
    """Pydantic would also read a number as a Unix time; the API takes ISO 8601 only, as documented."""
    if value is None or isinstance(value, dt.datetime) or (isinstance(value, str) and ISO_DATE.match(value)):
        return value
    raise ValueError("expected an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """Naive means UTC; a time that cannot be put in UTC (year 1 minus an offset) is invalid."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("date out of range") from None


PROFILE_SLUG = r"^[-a-zA-Z0-9_]+$"


class SessionFilters(Schema):
    status: SessionStatus | None = Field(None, description="Only sessions in this status.")
    profile: str | None = Field(
        None, pattern=PROFILE_SLUG, max_length=50, description="Only sessions of the profile with this slug."
    )
    created_after: dt.datetime | None = Field(None, description="Created at or after this time (ISO 8601).")
    created_before: dt.datetime | None = Field(None, description="Created before this time (ISO 8601).")
    # No NUL: PostgreSQL refuses it in text.
    q: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00]*$",
        description="Text that appears in the session's transcript (case-insensitive).",
    )

    _iso_only = field_validator("created_after", "created_before", mode="before")(_iso_only)
    _to_utc = field_validator("created_after", "created_before")(_utc)


def _json_number(value):
    if isinstance(value, (str, bool)):
        raise ValueError("must be a number")
    return value


class SessionCreateIn(Schema):
    """The profile to mint for, and overrides of its LiveAvatar settings for this one session; all optional."""

    model_config = ConfigDict(extra="forbid")

    profile: str | None = Field(
        None, pattern=PROFILE_SLUG, max_length=50, description="The profile's slug (default: the default profile)."
    )
    language: str | None = Field(
        None,
        pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$",
        examples=["en", "fr"],
        description="Language of the avatar (ISO code).",
    )
    # What the schema says and nothing coerced into it: 0, 0.0 or "yes" are not booleans, "60" is
    # not a number (a whole 60.0 is, as JSON Schema counts it).
    sandbox: StrictBool | None = Field(None, description="A free, short sandbox session (sandbox avatar only).")
    interactivity: Literal["CONVERSATIONAL", "PUSH_TO_TALK"] | None = None
    max_session_duration: (
        Annotated[int, Interval(ge=30, le=settings.LIVEAVATAR_MAX_SESSION_SECONDS), BeforeValidator(_json_number)]
        | None
    ) = Field(
        None,
        description=f"Seconds; at most LIVEAVATAR_MAX_SESSION_SECONDS ({settings.LIVEAVATAR_MAX_SESSION_SECONDS}).",
    )


class EventBatchIn(Schema):
    """The forwarding protocol's batch (docs/ARCHITECTURE.md); each item is checked as on the websocket."""

    type: Literal["events"] = "events"
    events: list[dict] = Field(
        description=f"At most {settings.INGEST_MAX_BATCH} items: "
        "{seq, ts (ms since epoch), source: server|command|client, event: {event_type, ...}}.",
        examples=[[{"seq": 1, "ts": 1764081234567, "source": "client", "event": {"event_type": "client.started"}}]],
    )


class ItemErrorOut(Schema):
    code: str = Field(examples=["bad_event"])
    message: str
    seqs: list[int]


class EventBatchOut(Schema):
    acked: list[int] = Field(description="Seqs stored (or already stored before): do not send them again.")
    errors: list[ItemErrorOut] = Field(description="Items refused, with why.")


class SessionCreatedOut(Schema):
    session_id: uuid.UUID
    liveavatar_session_id: str | None
    session_token: str = Field(description="For POST {liveavatar_api_url}/v1/sessions/start (Bearer).")
    liveavatar_api_url: str
    events_url: str = Field(description="Websocket for forwarding events, credential included: open as is.")
    events_http_url: str = Field(description='The same for HTTP batches (POST {"events": [...]}).')
    interactivity: str
    max_session_duration: int | None
    is_sandbox: bool


class TranscriptOut(Schema):
    session_id: uuid.UUID
    entries: list[TranscriptEntryOut]


class Pages(PageNumberPagination):
    """?page=&page_size= ; answers {"items": [...], "count": total}."""

    MAX_PAGE_SIZE = 200

    class Input(Schema):
        page: int = Field(1, ge=1, le=1_000_000)
        page_size: int = Field(50, ge=1, le=200)

    def __init__(self, **kwargs):
        super().__init__(page_size=50, max_page_size=self.MAX_PAGE_SIZE, **kwargs)
