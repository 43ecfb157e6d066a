"""The rows tests start from: sessions in a given state, API keys, staff and visitor accounts."""

import datetime as dt
import json
from pathlib import Path

from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.utils import timezone

from sessions_app import ingest, transcript_rows
from sessions_app.models import ApiKey, AvatarSession, SessionStatus, TranscriptEntry

PASSWORD = "pass-word-42"
CONVERSATION = json.loads((Path(__file__).parent / "fixtures" / "conversation.json").read_text())["events"]


def session(status=SessionStatus.ENDED, at=None, lines=(), **fields) -> AvatarSession:
    """A session in `status`, started `at` (now) unless it never started, with transcript `lines`
    ((speaker, text), two seconds apart)."""
    start = at or timezone.now()
    started = {} if status == SessionStatus.CREATED else {"started_at": start}
    row = AvatarSession.objects.create(status=status, created_at=start, **started, **fields)
    for position, (speaker, text) in enumerate(lines):
        TranscriptEntry.objects.create(
            session=row,
            position=position,
            speaker=speaker,
            text=text,
            started_at=start + dt.timedelta(seconds=2 * position + 1),
            ended_at=start + dt.timedelta(seconds=2 * position + 2),
        )
    return row


def recorded_session(**fields) -> AvatarSession:
    """A session holding the fixture conversation, stored through the real ingest path, read as
    the API reads it (its transcript brought up to date)."""
    row = AvatarSession.objects.create(**fields)
    async_to_sync(ingest.store_batch)(row, CONVERSATION)
    transcript_rows.bring_up_to_date([row.pk])
    return AvatarSession.objects.get(pk=row.pk)


def api_key(*scopes: str, name: str = "partner") -> str:
    """The raw key (the only time it exists) of a new API key with `scopes`."""
    return ApiKey.create(name, list(scopes))[1]


def bearer(raw_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


def staff(username: str = "staff", superuser: bool = False) -> User:
    if superuser:
        return User.objects.create_superuser(username, password=PASSWORD)
    return User.objects.create_user(username, password=PASSWORD, is_staff=True)


def visitor(username: str = "visitor") -> User:
    """A logged-in account that is not staff."""
    return User.objects.create_user(username, password=PASSWORD)
