"""Retention: the purge deletes what is older than RETENTION_DAYS, here and at LiveAvatar (the emulator)."""

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from privacy.tasks import purge, purge_expired_sessions, schedule_purge
from sessions_app.emulator.models import EmulatedSession
from sessions_app.models import AvatarSession, SessionEvent, SessionStatus, TranscriptEntry
from webhooks.models import Delivery, Endpoint

pytestmark = pytest.mark.django_db(transaction=True)

NOW = timezone.now()


def conversation(days_old: float, status=SessionStatus.ENDED) -> AvatarSession:
    """A session created `days_old` days before NOW, with everything stored of it, here and at LiveAvatar."""
    created = NOW - timedelta(days=days_old)
    remote = EmulatedSession.objects.create(
        status="ended", transcript=[{"role": "user", "transcript": "hello", "absolute_timestamp": 1}]
    )
    session = AvatarSession.objects.create(status=status, created_at=created, liveavatar_session_id=str(remote.id))
    SessionEvent.objects.create(session=session, seq=1, event_type="user.transcription", source="server", payload={})
    TranscriptEntry.objects.create(session=session, position=1, speaker="user", text="hello")
    endpoint = Endpoint.objects.get_or_create(url="https://crm.example.com/hooks", events=["session.ended"])[0]
    Delivery.objects.create(endpoint=endpoint, session=session, event_type="session.ended")
    return session


def remote_transcript(session) -> list:
    return EmulatedSession.objects.get(pk=session.liveavatar_session_id).transcript


def test_it_purges_sessions_past_retention_here_and_at_liveavatar(settings):
    settings.RETENTION_DAYS = 30
    old, recent, live = conversation(31), conversation(29), conversation(40, SessionStatus.ACTIVE)

    assert purge(NOW) == 1
    assert not AvatarSession.objects.filter(pk=old.pk).exists()
    for model in (SessionEvent, TranscriptEntry, Delivery):
        assert not model.objects.filter(session_id=old.pk).exists()
        assert model.objects.filter(session_id=recent.pk).exists()
    assert remote_transcript(old) == []  # DELETE /v1/sessions/{id}/events reached LiveAvatar
    assert remote_transcript(recent) != []
    assert AvatarSession.objects.filter(pk=live.pk).exists()  # purged once it has ended

    # Two days later the other one is due too.
    assert purge(NOW + timedelta(days=2)) == 1
    assert not AvatarSession.objects.filter(pk=recent.pk).exists()


def test_it_keeps_everything_when_retention_is_forever(settings):
    settings.RETENTION_DAYS = None
    session = conversation(3650)
    assert purge(NOW) == 0
    assert AvatarSession.objects.filter(pk=session.pk).exists()


def test_a_session_liveavatar_would_not_forget_is_kept_for_the_next_purge(settings):
    settings.RETENTION_DAYS = 30
    settings.LIVEAVATAR_TRANSPORT = lambda: httpx.MockTransport(lambda request: httpx.Response(500))
    session = conversation(31)
    assert purge(NOW) == 0
    assert AvatarSession.objects.filter(pk=session.pk).exists()


def test_each_purge_queues_the_next_and_only_one_waits(settings):
    from django_tasks_db.models import DBTaskResult

    settings.RETENTION_DAYS = 30
    assert schedule_purge()
    assert not schedule_purge()
    DBTaskResult.objects.get(status="READY").delete()
    purge_expired_sessions.call()
    after = DBTaskResult.objects.get(status="READY")
    assert not schedule_purge()
    assert after.run_after >= timezone.now() + timedelta(seconds=settings.RETENTION_PURGE_INTERVAL_SECONDS - 60)


def test_the_admin_shows_when_each_session_will_be_purged(settings, admin_client):
    settings.RETENTION_DAYS = 30
    session = conversation(10)
    page = admin_client.get(f"/admin/sessions_app/avatarsession/{session.pk}/change/").content.decode()
    assert "Purged on" in page
    when = session.created_at + timedelta(days=30)
    assert f"{when:%Y}" in page and "Kept forever" not in page
    settings.RETENTION_DAYS = None
    assert (
        "Kept forever" in admin_client.get(f"/admin/sessions_app/avatarsession/{session.pk}/change/").content.decode()
    )
