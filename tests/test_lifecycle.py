"""The server's own part of a session's life, against the built-in emulator: stop, reconcile, reap, expire."""

import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from sessions_app import ingest, lifecycle, liveavatar, minting
from sessions_app.models import AvatarSession, EndReason, SessionStatus, TranscriptOrigin
from tests.livekit_client import TestClient
from tests.waiting import transcript_caught_up

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_emulator(settings):
    settings.EMULATOR_SPEED = 50


async def started_session() -> tuple[AvatarSession, dict]:
    session, token = await minting.mint_session(visitor_key="lifecycle-test")
    room = await liveavatar.get_client().start(token)
    return session, room


class Page:
    """Just enough of the visitor page: joins the emulated room and forwards what it hears."""

    def __init__(self, session, room):
        self.session, self.seq = session, 0
        self.room = TestClient(room)

    def item(self, source, event):
        self.seq += 1
        return {"seq": self.seq, "ts": int(time.time() * 1000), "source": source, "event": event}

    async def join(self):
        await self.room.connect()
        await ingest.store_batch(
            self.session,
            [
                self.item("client", {"event_type": "client.started"}),
                self.item("client", {"event_type": "client.connected"}),
            ],
        )

    async def say(self, text):
        await self.room.command("emulator.user_says", text=text)

    async def forward_until(self, event_type, count=1, drop=()):
        """Forward server events until `count` of `event_type` went by; events in `drop` are lost on the way."""
        while count:
            event, _ = await self.room.event()
            count -= event["event_type"] == event_type
            if event["event_type"] not in drop:
                await ingest.store_batch(self.session, [self.item("server", event)])


async def transcript_of(session):
    await transcript_caught_up(session.pk)
    return [(e.speaker, e.text, e.origin) async for e in session.transcript.order_by("position")]


async def test_stopping_ends_the_session_here_and_at_liveavatar():
    session, room = await started_session()
    page = Page(session, room)
    await page.join()
    session = await lifecycle.stop_session(session, "USER_CLOSED")
    assert (session.status, session.end_reason) == (SessionStatus.ENDED, "USER_CLOSED")
    remote = await liveavatar.get_client().get_session(session.liveavatar_session_id)
    assert remote["end_reason"] == "USER_CLOSED"
    await page.forward_until("session.stopped")  # the room tells the page; the late event changes nothing
    assert (await AvatarSession.objects.aget(pk=session.pk)).end_reason == "USER_CLOSED"


async def test_stopping_a_session_liveavatar_no_longer_knows_still_ends_it():
    session = await AvatarSession.objects.acreate(
        liveavatar_session_id="0b7c1c8e-0000-4000-8000-000000000000",
        status=SessionStatus.ACTIVE,
        started_at=timezone.now(),
    )
    session = await lifecycle.stop_session(session)
    assert (session.status, session.end_reason) == (SessionStatus.ENDED, "USER_CLOSED")


async def test_reconciliation_adds_what_the_browser_never_forwarded():
    session, room = await started_session()
    page = Page(session, room)
    await page.join()
    await page.forward_until("avatar.speak_ended")  # the opening line
    await page.say("What are your opening hours?")
    # The user's words are lost on the way (a flaky network); the avatar's reply arrives.
    await page.forward_until("avatar.speak_ended", drop={"user.transcription", "user.transcription.chunk"})
    before = await transcript_of(session)
    assert [speaker for speaker, *_ in before] == ["avatar", "avatar"]

    session = await lifecycle.stop_session(session)
    assert await lifecycle.reconcile(session) == 1
    after = await transcript_of(session)
    assert after == [before[0], ("user", "What are your opening hours?", TranscriptOrigin.LIVEAVATAR), before[1]]
    session = await AvatarSession.objects.aget(pk=session.pk)
    assert session.reconciled_at is not None and session.turn_count == 3
    assert await lifecycle.reconcile(session) == 0  # a second pass adds nothing
    await page.room.close()


async def test_the_reaper_stops_orphans_at_liveavatar_and_leaves_live_pages_alone(settings):
    settings.ORPHAN_GRACE_SECONDS = 120
    orphan, _ = await started_session()
    watched, _ = await started_session()
    quiet_but_recent, _ = await started_session()
    stale_socket, _ = await started_session()
    long_ago = timezone.now() - timedelta(minutes=10)
    await AvatarSession.objects.filter(pk=orphan.pk).aupdate(
        status=SessionStatus.ACTIVE, started_at=long_ago, last_event_at=long_ago
    )
    # Silent past the grace period, but its socket is open: the visitor may just be reading.
    await AvatarSession.objects.filter(pk=watched.pk).aupdate(
        status=SessionStatus.ACTIVE,
        started_at=long_ago,
        last_event_at=timezone.now() - timedelta(minutes=4),
        open_connections=1,
    )
    await AvatarSession.objects.filter(pk=quiet_but_recent.pk).aupdate(
        status=SessionStatus.ACTIVE, started_at=long_ago, last_event_at=timezone.now()
    )
    # Counted as connected, but not even a keep-alive for three grace periods: its process died.
    await AvatarSession.objects.filter(pk=stale_socket.pk).aupdate(
        status=SessionStatus.ACTIVE, started_at=long_ago, last_event_at=long_ago, open_connections=1
    )

    counts = await lifecycle.reap_orphans()

    assert counts["orphaned"] == 2
    orphan = await AvatarSession.objects.aget(pk=orphan.pk)
    assert (orphan.status, orphan.end_reason) == (SessionStatus.ENDED, EndReason.ORPHANED)
    remote = await liveavatar.get_client().get_session(orphan.liveavatar_session_id)
    assert remote["end_reason"] == "USER_DISCONNECTED"
    assert orphan.reconciled_at is not None
    assert (await AvatarSession.objects.aget(pk=stale_socket.pk)).status == SessionStatus.ENDED
    statuses = [
        s
        async for s in AvatarSession.objects.filter(pk__in=[watched.pk, quiet_but_recent.pk]).values_list(
            "status", flat=True
        )
    ]
    assert statuses == [SessionStatus.ACTIVE, SessionStatus.ACTIVE]


async def test_tokens_never_started_expire(settings):
    settings.TOKEN_EXPIRY_SECONDS = 60
    old, _ = await minting.mint_session(visitor_key="expiry-test")
    fresh, _ = await minting.mint_session(visitor_key="expiry-test")
    await AvatarSession.objects.filter(pk=old.pk).aupdate(created_at=timezone.now() - timedelta(minutes=5))
    assert (await lifecycle.reap_orphans())["expired"] == 1
    assert (await AvatarSession.objects.aget(pk=old.pk)).status == SessionStatus.EXPIRED
    assert (await AvatarSession.objects.aget(pk=fresh.pk)).status == SessionStatus.CREATED


def test_the_management_command_runs_one_pass(capsys):
    call_command("reap_orphans")
    assert "orphaned: 0" in capsys.readouterr().out


def test_illegal_transitions_are_ignored(caplog):
    session = AvatarSession(status=SessionStatus.ENDED, end_reason="USER_CLOSED")
    assert not session.move_to(SessionStatus.ACTIVE, timezone.now())
    assert (session.status, session.end_reason) == (SessionStatus.ENDED, "USER_CLOSED")
    assert "ignored ended → active" in caplog.text


def test_the_server_reaps_on_its_own_when_the_reaper_is_on(make_daphne_server):
    long_ago = timezone.now() - timedelta(minutes=10)
    orphan = AvatarSession.objects.create(status=SessionStatus.ACTIVE, started_at=long_ago, last_event_at=long_ago)
    make_daphne_server(env={"REAPER_INTERVAL_SECONDS": "1"})  # its health probe is the first request
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and AvatarSession.objects.get(pk=orphan.pk).status != SessionStatus.ENDED:
        time.sleep(0.2)
    assert AvatarSession.objects.get(pk=orphan.pk).end_reason == EndReason.ORPHANED
