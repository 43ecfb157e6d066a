"""Reconciliation against LiveAvatar's transcript: what it recognises as already there, and where a
missing utterance goes."""

from datetime import UTC, datetime, timedelta

import pytest

from sessions_app import lifecycle
from sessions_app.models import AvatarSession, SessionStatus, TranscriptEntry, TranscriptOrigin

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 2, 12, 0, 0, 250000, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stored(session, *rows):
    for position, (speaker, text, started, extra) in enumerate(rows, start=1):
        TranscriptEntry.objects.create(
            session=session, position=position, speaker=speaker, text=text, started_at=at(started), **extra
        )


def transcript_of(session):
    return [(e.speaker, e.text, e.origin) for e in session.transcript.order_by("position")]


@pytest.fixture
def session():
    return AvatarSession.objects.create(liveavatar_session_id="la-1", status=SessionStatus.ENDED, started_at=at(0))


def utterance(role, text, seconds):
    return {"role": role, "transcript": text, "absolute_timestamp": int(at(seconds).timestamp())}


def test_an_interrupted_answer_is_recognised_in_liveavatars_record_and_nothing_is_added(session):
    stored(
        session,
        ("avatar", "Hello! How can I help?", 1, {}),
        ("user", "What are your opening hours?", 4, {}),
        (
            "avatar",
            "We are open from",
            6,
            {"interrupted": True, "intended_text": "We are open from nine to five, Monday to Friday."},
        ),
    )
    before = transcript_of(session)
    # LiveAvatar heard the typed question as no utterance, and kept the answer as far as it was spoken.
    added, _ = lifecycle.add_missing_utterances(
        session.pk, [utterance("avatar", "Hello! How can I help?", 1), utterance("avatar", "We are open from", 6)]
    )
    assert added == 0
    assert transcript_of(session) == before
    # Or as it was meant: that is the same turn too.
    added, _ = lifecycle.add_missing_utterances(
        session.pk, [utterance("avatar", "We are open from nine to five, Monday to Friday.", 6)]
    )
    assert added == 0


def test_a_missing_utterance_is_placed_in_time_order_never_before_what_preceded_it(session):
    stored(
        session,
        ("avatar", "Hello! How can I help?", 1, {}),
        ("user", "What are your opening hours?", 4, {}),
        ("avatar", "Nine to five.", 6, {}),
    )
    # LiveAvatar's previous utterance matches the greeting, but the missing one came after the answer.
    added, _ = lifecycle.add_missing_utterances(
        session.pk, [utterance("avatar", "Hello! How can I help?", 1), utterance("user", "Thanks, bye.", 9)]
    )
    assert added == 1
    assert transcript_of(session)[-1] == ("user", "Thanks, bye.", TranscriptOrigin.LIVEAVATAR)
    times = [e.started_at for e in session.transcript.order_by("position")]
    assert times == sorted(times)
    assert AvatarSession.objects.get(pk=session.pk).turn_count == 4
