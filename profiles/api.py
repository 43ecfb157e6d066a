"""/api/v1/profiles: list, create, read, change and delete avatar profiles (scopes profiles:read, profiles:write)."""

import datetime as dt
import uuid
from typing import Annotated, Literal

from annotated_types import Interval
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import BeforeValidator, ConfigDict, StrictBool

from privacy import redaction
from sessions_app.api.auth import requires
from sessions_app.api.schemas import ErrorOut

from . import budgets
from .models import AvatarProfile

READ = "profiles:read"
WRITE = "profiles:write"
AUTH_ERRORS = {401: ErrorOut, 403: ErrorOut, 429: ErrorOut}

router = Router(tags=["profiles"])


def _json_number(value):
    if isinstance(value, (str, bool)):
        raise ValueError("must be a number")
    return value


Slug = Annotated[str, Field(pattern=r"^[-a-zA-Z0-9_]+$", min_length=1, max_length=50)]
Text = Annotated[str, Field(pattern=r"^[^\x00]*$")]  # no NUL: PostgreSQL refuses it in text
Minutes = Annotated[int, Interval(ge=0, le=24 * 60), BeforeValidator(_json_number)] | None
Seconds = Annotated[int, Interval(ge=30, le=24 * 3600), BeforeValidator(_json_number)]
Count = Annotated[int, Interval(ge=0, le=100_000), BeforeValidator(_json_number)] | None
Days = Annotated[int, Interval(ge=1, le=100 * 365), BeforeValidator(_json_number)] | None
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", examples=["en", "fr"])]
PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
ORIGIN = rf"^https?://{LABEL}(\.{LABEL})*(:{PORT})?$"
Origins = Annotated[list[Annotated[str, Field(pattern=ORIGIN, max_length=300)]], Field(max_length=50)]


class ProfileFields(Schema):
    """Every field; a POST needs slug, name and avatar_id, a PATCH sends only what changes. Only the
    ids and the budgets take null (no voice, no context, no voice agent; no limit)."""

    model_config = ConfigDict(extra="forbid")

    # Not nullable, yet not required: absent means unchanged (the defaults are never validated).
    name: Annotated[Text, Field(min_length=1, max_length=100)] = None
    active: StrictBool = None
    avatar_id: uuid.UUID = None
    voice_id: uuid.UUID | None = Field(None, description="null: the avatar's default voice.")
    context_id: uuid.UUID | None = Field(None, description="null: no context (the avatar only listens).")
    voice_agent_id: uuid.UUID | None = Field(
        None, description="A stored voice agent: when set, it is sent instead of voice_id and context_id."
    )
    language: Language = None
    interactivity: Literal["CONVERSATIONAL", "PUSH_TO_TALK"] = None
    video_quality: Literal["very_high", "high", "medium", "low"] = None
    is_sandbox: StrictBool = Field(None, description="Sandbox sessions always use the sandbox avatar.")
    max_session_duration: Seconds = Field(None, description="Seconds one conversation may last at most.")
    heading: Annotated[Text, Field(min_length=1, max_length=200)] = None
    intro: Annotated[Text, Field(max_length=5000)] = None
    allowed_origins: Origins = Field(
        None,
        description="Sites that may embed the profile: scheme://host[:port] each.",
        examples=[["https://shop.example"]],
    )
    visitor_minutes_per_day: Minutes = Field(None, description="null: no limit.")
    minutes_per_day: Minutes = Field(None, description="null: no limit.")
    max_live_sessions: Count = Field(None, description="null: no limit.")
    # Empty or null: the site's setting (named in each description).
    session_start: Literal["", "browser", "server"] = Field(
        None, description='Who starts its LiveAvatar sessions; "": LIVEAVATAR_SESSION_START.'
    )
    mark_operator_lines: StrictBool | None = Field(
        None, description="Show visitors the avatar lines staff or a system sent; null: CONTROL_MARK_OPERATOR_LINES."
    )
    redaction_enabled: StrictBool | None = Field(None, description="Redact personal data; null: REDACTION_ENABLED.")
    redaction_kinds: list[Literal[redaction.KINDS]] = Field(
        None, max_length=len(redaction.KINDS), description="What is redacted; []: REDACTION_KINDS."
    )
    country: Annotated[str, Field(pattern=r"^([A-Z]{2})?$")] = Field(
        None, description='Phone numbers without + are read as this country\'s (e.g. "DE"); "": REDACTION_REGION.'
    )
    retention_days: Days = Field(None, description="Days its sessions are kept; null: RETENTION_DAYS.")


class ProfileCreateIn(ProfileFields):
    slug: Slug
    name: Annotated[Text, Field(min_length=1, max_length=100)]
    avatar_id: uuid.UUID


class UsageOut(Schema):
    live_sessions: int = Field(description="Minted, started or running now.")
    minutes_today: float = Field(description="Minutes of conversation since midnight (server time).")


class ProfileOut(Schema):
    slug: str
    name: str
    active: bool
    is_default: bool
    avatar_id: str
    voice_id: str
    context_id: str
    voice_agent_id: str
    language: str
    interactivity: str
    video_quality: str
    is_sandbox: bool
    max_session_duration: int
    heading: str
    intro: str
    allowed_origins: list[str]
    visitor_minutes_per_day: int | None
    minutes_per_day: int | None
    max_live_sessions: int | None
    session_start: str
    mark_operator_lines: bool | None
    redaction_enabled: bool | None
    redaction_kinds: list[str]
    country: str
    retention_days: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    usage: UsageOut

    @staticmethod
    def resolve_usage(profile):
        used = budgets.usage(profile)
        return {"live_sessions": used.live, "minutes_today": used.minutes_today}


# Nullable ids become the model's empty strings.
ID_FIELDS = ("avatar_id", "voice_id", "context_id", "voice_agent_id")


def _profile(slug: str) -> AvatarProfile:
    profile = AvatarProfile.objects.filter(slug=slug).first()
    if profile is None:
        raise HttpError(404, "No such profile.")
    return profile


def _save(profile: AvatarProfile, changes: dict) -> AvatarProfile:
    """Apply the changes, check the whole profile as the admin does, and store it; 422 or 409 otherwise."""
    for name, value in changes.items():
        if name in ID_FIELDS:
            value = str(value) if value else ""
        setattr(profile, name, value)
    try:
        profile.full_clean(validate_unique=False)
    except ValidationError as exc:
        problems = [f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()]
        raise HttpError(422, "; ".join(problems)) from None
    try:
        with transaction.atomic():
            profile.save()
    except IntegrityError:
        raise HttpError(409, f"A profile with slug {profile.slug!r} exists already.") from None
    return profile


@router.get(
    "",
    response={200: list[ProfileOut], **AUTH_ERRORS},
    auth=requires(READ),
    summary="List the avatar profiles",
)
def list_profiles(request):
    return list(AvatarProfile.objects.all())


@router.post(
    "",
    response={201: ProfileOut, **AUTH_ERRORS, 400: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    auth=requires(WRITE),
    summary="Create an avatar profile",
)
def create_profile(request, body: ProfileCreateIn):
    changes = body.model_dump(exclude_unset=True)
    return Status(201, _save(AvatarProfile(), changes))


@router.get(
    "/{slug}",
    response={200: ProfileOut, **AUTH_ERRORS, 404: ErrorOut, 422: ErrorOut},
    auth=requires(READ),
    summary="One avatar profile, with its usage today",
)
def get_profile(request, slug: Slug):
    return _profile(slug)


@router.patch(
    "/{slug}",
    response={200: ProfileOut, **AUTH_ERRORS, 400: ErrorOut, 404: ErrorOut, 422: ErrorOut},
    auth=requires(WRITE),
    summary="Change some of a profile's fields (null clears an id or a budget)",
)
def update_profile(request, slug: Slug, body: ProfileFields):
    profile = _profile(slug)
    changes = body.model_dump(exclude_unset=True)  # null is kept: it clears an id or a budget
    return _save(profile, changes)


@router.delete(
    "/{slug}",
    response={204: None, **AUTH_ERRORS, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    auth=requires(WRITE),
    summary="Delete a profile that has no sessions",
)
def delete_profile(request, slug: Slug):
    profile = _profile(slug)
    if profile.is_default:
        raise HttpError(409, "The default profile serves the home page: change it instead.")
    if profile.sessions.exists():
        # Its sessions are evidence and keep their profile.
        raise HttpError(409, "The profile has sessions: set active to false instead.")
    profile.delete()
    return Status(204, None)
