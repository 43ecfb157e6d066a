"""What the record says: the server's clock times a session, who ended it (and the page is told), and
visits that never started a conversation stay out of the figures and are purged."""

import json
from datetime import timedelta

import httpx
import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.utils import timezone

from avatar_site.asgi import application
from sessions_app import credentials, dashboard, lifecycle
from sessions_app.models import ApiKey, AvatarSession, EndReason, SessionEvent, SessionStatus

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = [(b"origin", b"http://127.0.0.1")]
# The README's example as it once was: a page clock from 2025, a year behind the server's.
TS_2025 = 1764081234567
LIVEAVATAR_OK = {"code": 1000, "data": None, "message": "ok"}


@pytest.fixture
def auth():
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiKey.create('crm', ['sessions:read', 'sessions:write'])[1]}"}


def readme_events(ts: int) -> dict:
    return {
        "events": [
            {"seq": 1, "ts": ts, "source": "client", "event": {"event_type": "client.started"}},
            {
                "seq": 2,
                "ts": ts + 500,
                "source": "server",
                "event": {"event_id": "e1", "event_type": "user.transcription", "text": "How much is the Pro plan?"},
            },
            {
                "seq": 3,
                "ts": ts + 1500,
                "source": "server",
                "event": {"event_id": "e2", "event_type": "avatar.transcription", "text": "It is 20 euros a month."},
            },
        ]
    }


def post_json(client, url, body, auth):
    return client.post(url, json.dumps(body), content_type="application/json", **auth)


def test_the_readme_example_with_a_page_clock_from_2025_is_timed_by_the_servers_clock(client, auth):
    session_id = post_json(client, "/api/v1/sessions", {}, auth).json()["session_id"]
    before = timezone.now()
    answer = post_json(client, f"/api/v1/sessions/{session_id}/events", readme_events(TS_2025), auth)
    assert answer.json() == {"acked": [1, 2, 3], "errors": []}
    session = AvatarSession.objects.get(pk=session_id)
    assert before <= session.started_at <= timezone.now()
    assert before <= session.last_event_at <= timezone.now()
    assert session.duration_seconds < 60
    assert dashboard.figures()["today"]["minutes"] < 1

    assert post_json(client, f"/api/v1/sessions/{session_id}/stop", {}, auth).status_code == 200
    session.refresh_from_db()
    assert 0 <= (session.ended_at - session.started_at).total_seconds() < 60
    # The page's clock is kept as it came, each event flagged as far from the server's.
    events = list(SessionEvent.objects.filter(session_id=session_id).order_by("seq"))
    assert [e.client_ts.year for e in events] == [2025, 2025, 2025]
    assert [e.clock_skewed for e in events] == [True, True, True]
    listed = client.get(f"/api/v1/sessions/{session_id}/events", **auth).json()["items"]
    assert [e["clock_skewed"] for e in listed] == [True, True, True]


def test_an_event_on_the_servers_time_is_not_flagged(client, auth):
    session_id = post_json(client, "/api/v1/sessions", {}, auth).json()["session_id"]
    now_ms = int(timezone.now().timestamp() * 1000)
    post_json(client, f"/api/v1/sessions/{session_id}/events", readme_events(now_ms - 60_000), auth)
    assert not SessionEvent.objects.filter(clock_skewed=True).exists()


def test_a_stop_through_the_api_records_the_key_that_asked(client, auth):
    session_id = post_json(client, "/api/v1/sessions", {}, auth).json()["session_id"]
    body = post_json(client, f"/api/v1/sessions/{session_id}/stop", {}, auth).json()
    assert (body["status"], body["end_reason"], body["ended_by"]) == ("ended", "API_ENDED", "api:crm")


def test_a_stop_by_a_staff_member_through_the_api_records_them(client, auth):
    session_id = post_json(client, "/api/v1/sessions", {}, auth).json()["session_id"]
    client.force_login(User.objects.create_user("ann", is_staff=True))
    body = client.post(f"/api/v1/sessions/{session_id}/stop").json()  # the test client skips CSRF
    assert (body["end_reason"], body["ended_by"]) == ("STAFF_ENDED", "staff:ann")


async def open_socket(session):
    socket = WebsocketCommunicator(
        application, f"/ws/sessions/{session.id}/events/?credential={credentials.mint(session.id)}", headers=ORIGIN
    )
    assert (await socket.connect())[0]
    return socket


def stopped_item(seq: int, reason: str) -> str:
    event = {"event_type": "session.stopped", "end_reason": reason}
    return json.dumps({"events": [{"seq": seq, "ts": 1, "source": "server", "event": event}]})


async def live_session() -> AvatarSession:
    return await AvatarSession.objects.acreate(
        liveavatar_session_id="0b7c1c8e-0000-4000-8000-000000000001",
        status=SessionStatus.ACTIVE,
        started_at=timezone.now(),
    )


async def test_a_staff_stop_is_recorded_and_told_to_the_page_even_when_liveavatars_echo_comes_first(settings):
    session = await live_session()
    socket = await open_socket(session)
    heard = []

    async def liveavatar(request):
        # LiveAvatar closes the room before it answers: the page forwards the room's session.stopped,
        # which says only what LiveAvatar was told.
        await socket.send_to(text_data=stopped_item(1, "USER_CLOSED"))
        heard.extend([await socket.receive_json_from(), await socket.receive_json_from()])
        return httpx.Response(200, json=LIVEAVATAR_OK)

    settings.LIVEAVATAR_TRANSPORT = lambda: httpx.MockTransport(liveavatar)
    session = await lifecycle.stop_session(session, "USER_CLOSED", EndReason.STAFF_ENDED, ended_by="staff:ann")
    assert heard == [
        {"type": "session.ended", "status": "ended", "end_reason": "STAFF_ENDED"},
        {"type": "ack", "seqs": [1]},
    ]
    assert (session.status, session.end_reason, session.ended_by) == ("ended", "STAFF_ENDED", "staff:ann")
    await socket.disconnect()


async def test_a_stop_liveavatar_refuses_leaves_the_session_live_and_unclaimed(settings):
    session = await live_session()
    settings.LIVEAVATAR_MAX_RETRIES = 0
    settings.LIVEAVATAR_TRANSPORT = lambda: httpx.MockTransport(
        lambda request: httpx.Response(500, json={"code": 5000, "data": None, "message": "Internal error"})
    )
    with pytest.raises(lifecycle.liveavatar.LiveAvatarError):
        await lifecycle.stop_session(session, "USER_CLOSED", EndReason.BUDGET_EXCEEDED)
    session = await AvatarSession.objects.aget(pk=session.pk)
    assert (session.status, session.end_reason, session.ended_by) == ("active", "", "")
    # The visitor then ends it: their reason, not the stop that never happened.
    socket = await open_socket(session)
    await socket.send_to(text_data=stopped_item(1, "USER_CLOSED"))
    assert await socket.receive_json_from() == {"type": "session.ended", "status": "ended", "end_reason": "USER_CLOSED"}
    await socket.disconnect()


async def test_a_page_that_reconnects_after_the_end_is_told_once():
    session = await live_session()
    socket = await open_socket(session)
    await socket.send_to(text_data=stopped_item(1, "MAX_DURATION_REACHED"))
    assert (await socket.receive_json_from())["end_reason"] == "MAX_DURATION_REACHED"
    assert (await socket.receive_json_from())["type"] == "ack"
    await socket.send_to(text_data=stopped_item(2, "UNKNOWN"))
    assert await socket.receive_json_from() == {"type": "ack", "seqs": [2]}
    await socket.disconnect()


# Visits that never started a conversation


def visit(age: timedelta, **fields) -> AvatarSession:
    return AvatarSession.objects.create(created_at=timezone.now() - age, **fields)


def test_visits_never_started_are_in_no_figure(admin_client):
    now = timezone.now()
    visit(timedelta(minutes=5))
    visit(timedelta(hours=2), status=SessionStatus.EXPIRED, ended_at=now - timedelta(hours=1))
    talked = visit(timedelta(minutes=3), status=SessionStatus.ENDED, started_at=now - timedelta(minutes=3))
    talked.ended_at = now - timedelta(minutes=1)
    talked.save()
    figures = admin_client.get("/dashboard/figures").json()
    assert figures["figures"]["today"]["sessions"] == 1
    assert [s["id"] for s in figures["recent"]] == [str(talked.id)]


async def test_the_reaper_expires_a_token_never_started_and_purges_it_a_day_later(settings):
    settings.TOKEN_EXPIRY_SECONDS = 3600
    session = await AvatarSession.objects.acreate(created_at=timezone.now() - timedelta(hours=2))
    counts = await lifecycle.reap_orphans()
    assert (counts["expired"], counts["purged"]) == (1, 0)
    assert (await AvatarSession.objects.aget(pk=session.pk)).status == SessionStatus.EXPIRED
    assert (await lifecycle.reap_orphans(timezone.now() + timedelta(hours=23)))["purged"] == 0
    assert (await lifecycle.reap_orphans(timezone.now() + timedelta(hours=25)))["purged"] == 1
    assert not await AvatarSession.objects.filter(pk=session.pk).aexists()


def test_the_webvtt_of_a_page_clock_from_2025_counts_from_the_pages_start(client, auth):
    session_id = post_json(client, "/api/v1/sessions", {}, auth).json()["session_id"]
    post_json(client, f"/api/v1/sessions/{session_id}/events", readme_events(TS_2025), auth)
    vtt = client.get(f"/api/v1/sessions/{session_id}/transcript?format=vtt", **auth).content.decode()
    assert "00:00:00.500 --> " in vtt and "<v Visitor>How much is the Pro plan?" in vtt
