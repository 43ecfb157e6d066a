"""The shapes of the stored record: a session, its transcript entries, its events.

One place for each: the REST API answers with them (its OpenAPI document is generated from them),
webhook payloads carry them and the admin's JSON export writes them.
"""

import datetime as dt
import uuid

from ninja import Field, Schema

from .models import CreatedVia, EndReason, EventSource, Interactivity, SessionStatus, Speaker, TranscriptOrigin


class SessionOut(Schema):
    id: uuid.UUID
    liveavatar_session_id: str | None
    status: SessionStatus
    end_reason: str = Field(
        description=f"Ours ({', '.join(EndReason.values)}) or LiveAvatar's own "
        "(e.g. MAX_DURATION_REACHED, IDLE_TIMEOUT)."
    )
    ended_by: str = Field(description='Who ended it: "staff:<username>", "api:<key name>", or empty.')
    error: str
    is_sandbox: bool
    interactivity: Interactivity
    max_session_duration: int | None
    avatar_id: str
    profile: str | None = Field(description="The slug of the profile it was minted for.")
    created_via: CreatedVia
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    last_event_at: dt.datetime | None
    duration_seconds: float | None
    turn_count: int
    interruption_count: int
    median_latency_ms: int | None
    avatar_speaking_ms: int

    @staticmethod
    def resolve_profile(session) -> str | None:
        return session.profile.slug if session.profile_id else None


class TranscriptEntryOut(Schema):
    position: int
    speaker: Speaker
    text: str
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    interrupted: bool
    intended_text: str = Field(description="Avatar turns cut short: what the avatar meant to say (empty otherwise).")
    unanswered: bool = Field(description="Visitor turns whose answer an interrupt or the end dropped.")
    partial: bool = Field(alias="from_chunks", description="Built from partial chunks: no final text arrived.")
    origin: TranscriptOrigin
    latency_ms: int | None
    sent_by: str = Field(
        description="A line sent through live control: who sent it (staff:<user> or api:<key name>); else empty."
    )


class EventOut(Schema):
    seq: int
    event_id: str
    event_type: str
    source: EventSource
    payload: dict
    client_ts: dt.datetime | None = Field(description="The sender's clock (its ts).")
    received_at: dt.datetime = Field(description="The server's clock, which times the session.")
    clock_skewed: bool = Field(description="ts was more than CLOCK_SKEW_SECONDS from the server's clock.")


class SessionRecordOut(SessionOut):
    """A session with its transcript and its events, as the admin's JSON export writes it."""

    transcript: list[TranscriptEntryOut]
    events: list[EventOut]

    @staticmethod
    def resolve_transcript(session) -> list:
        return list(session.transcript.all())

    @staticmethod
    def resolve_events(session) -> list:
        return list(session.events.all())
