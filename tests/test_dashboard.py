"""The staff dashboard: who may see it, its figures, and the live feed over /ws/dashboard/."""

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone

from sessions_app import close_codes, dashboard, feed, ingest
from sessions_app.consumers import DashboardConsumer
from sessions_app.models import AvatarSession, SessionStatus, TranscriptEntry

pytestmark = pytest.mark.django_db(transaction=True)

CONVERSATION = json.loads((Path(__file__).parent / "fixtures" / "conversation.json").read_text())["events"]


def test_staff_get_the_page_with_its_figures(admin_client):
    response = admin_client.get(reverse("sessions_app:dashboard"))
    assert response.status_code == 200
    assert b'id="dashboard-data"' in response.content and static("js/dashboard.js").encode() in response.content


def test_visitors_and_non_staff_users_are_refused(client):
    assert client.get(reverse("sessions_app:dashboard")).status_code == 302  # to the staff login
    client.force_login(User.objects.create_user("visitor", password="x"))
    response = client.get(reverse("sessions_app:dashboard"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def ended(
    minutes_ago: int,
    seconds: int,
    latencies=(),
    reason="USER_CLOSED",
    status=SessionStatus.ENDED,
    interruptions=0,
    now=None,
):
    start = (now or timezone.now()) - timedelta(minutes=minutes_ago)
    session = AvatarSession.objects.create(
        status=status,
        end_reason=reason,
        created_at=start,
        started_at=start,
        ended_at=start + timedelta(seconds=seconds),
        interruption_count=interruptions,
    )
    for position, latency in enumerate(latencies, start=1):
        TranscriptEntry.objects.create(
            session=session, position=position, speaker="avatar", text="ok", latency_ms=latency
        )
    return session


def test_figures_count_sessions_minutes_latency_interruptions_and_failures():
    now = timezone.now().replace(hour=12)  # noon: "minutes ago" stays today
    ended(1, 120, latencies=[100, 200, 300], interruptions=2, now=now)
    ended(2, 60, latencies=[400, 1000], now=now)
    ended(3, 30, status=SessionStatus.FAILED, reason="START_FAILED", now=now)
    ended(4, 30, reason="ORPHANED", now=now)
    AvatarSession.objects.create()  # a token nobody started is not a session yet
    today = dashboard.figures(now)["today"]
    assert today == {
        "sessions": 4,
        "minutes": 4.0,
        "median_latency_ms": 300,
        "p95_latency_ms": 1000,
        "interruptions": 2,
        "failures": {"START_FAILED": 1, "ORPHANED": 1},
    }


def test_figures_of_the_week_include_earlier_days():
    ended(60 * 24 * 3, 60)
    ended(60 * 24 * 10, 60)  # too old
    figures = dashboard.figures()
    assert figures["week"]["sessions"] == 1 and figures["today"]["sessions"] == 0
    assert sum(day["sessions"] for day in figures["per_day"]) == 1 and len(figures["per_day"]) == 7


async def open_feed(user):
    socket = WebsocketCommunicator(DashboardConsumer.as_asgi(), "/ws/dashboard/")
    socket.scope["user"] = user
    await socket.connect()
    return socket


async def frames_until(socket, complete, timeout=5.0) -> list[dict]:
    """The feed's frames until `complete(frames)` holds, then nothing more for a moment."""
    frames = []
    async with asyncio.timeout(timeout):
        while not complete(frames):
            frames.append(await socket.receive_json_from(timeout))
    assert await socket.receive_nothing(timeout=0.2), "more frames than expected"
    return frames


async def test_the_feed_refuses_anyone_but_staff():
    for user in (AnonymousUser(), await User.objects.acreate(username="visitor")):
        socket = await open_feed(user)
        assert await socket.receive_output() == {"type": "websocket.close", "code": close_codes.FORBIDDEN}


async def test_staff_get_a_snapshot_then_every_change_as_it_is_stored():
    staff = await User.objects.acreate(username="staff", is_staff=True)
    live = await AvatarSession.objects.acreate(status=SessionStatus.ACTIVE, started_at=timezone.now())
    await TranscriptEntry.objects.acreate(session=live, position=1, speaker="avatar", text="Hi <b>there</b>")
    socket = await open_feed(staff)
    snapshot = await socket.receive_json_from()
    assert snapshot["type"] == "snapshot"
    assert [(s["id"], s["transcript"][0]["text"]) for s in snapshot["sessions"]] == [(str(live.id), "Hi <b>there</b>")]

    session = await AvatarSession.objects.acreate()
    await ingest.store_batch(session, CONVERSATION[:19])  # up to the user's final "What are your hours?"
    messages = await frames_until(socket, lambda frames: sum(f["type"] == "transcript" for f in frames) == 2)
    assert messages[0]["type"] == "session" and messages[0]["session"]["status"] == "active"
    entries = [m["entry"] for m in messages if m["type"] == "transcript"]
    assert [(e["position"], e["speaker"], e["text"], e["partial"]) for e in entries] == [
        (1, "avatar", "Hello! I'm Wayne. How can I help you today?", False),
        (2, "user", "What are your hours?", False),
    ]
    await socket.disconnect()


async def test_a_burst_from_many_sessions_reaches_the_feed_in_two_channel_messages(monkeypatch):
    """A burst from 20 sessions goes out as stored in one channel message, and their transcripts
    (with the new metrics) in one more once the catch-up has built them."""
    from channels.layers import get_channel_layer

    staff = await User.objects.acreate(username="staff", is_staff=True)
    socket = await open_feed(staff)
    assert (await socket.receive_json_from())["type"] == "snapshot"
    layer, sent = get_channel_layer(), []
    real_group_send = layer.group_send

    async def counting(group, message):
        sent.append(group)
        await real_group_send(group, message)

    monkeypatch.setattr(layer, "group_send", counting)
    sessions = [await AvatarSession.objects.acreate(status=SessionStatus.ACTIVE) for _ in range(20)]
    await asyncio.gather(*(ingest.store_batch(s, CONVERSATION[2:8]) for s in sessions))  # the opening line
    ids = {str(s.id) for s in sessions}

    def each_has(frames, kind):
        return {f["session_id"] for f in frames if f["type"] == kind} == ids

    frames = await frames_until(socket, lambda frames: each_has(frames, "metrics") and each_has(frames, "transcript"))
    assert sent == [feed.GROUP] * 2
    assert sorted(f["session"]["id"] for f in frames if f["type"] == "session") == sorted(ids)
    assert {f["session_id"]: f["turn_count"] for f in frames if f["type"] == "metrics"} == {
        str(s.id): 1 for s in sessions
    }
    await socket.disconnect()


def test_figures_and_budgets_by_profile(admin_client):
    from profiles.models import AvatarProfile

    desk = AvatarProfile.objects.create(
        slug="desk", name="Desk", avatar_id="a", max_live_sessions=2, minutes_per_day=30
    )
    started = timezone.now() - timedelta(minutes=5)
    AvatarSession.objects.create(profile=desk, status=SessionStatus.ENDED, started_at=started, ended_at=timezone.now())
    AvatarSession.objects.create(profile=desk, status=SessionStatus.ACTIVE, started_at=timezone.now())
    AvatarSession.objects.create(profile=AvatarProfile.objects.default(), status=SessionStatus.ENDED)
    assert dashboard.figures(profile=desk)["today"]["sessions"] == 2
    assert dashboard.figures()["today"]["sessions"] == 3
    body = admin_client.get("/dashboard/figures", {"profile": "desk"}).json()
    assert len(body["recent"]) == 2 and {s["profile_id"] for s in body["recent"]} == {desk.pk}
    row = next(row for row in body["budgets"] if row["slug"] == "desk")
    assert (row["live"], row["max_live_sessions"], row["minutes_per_day"]) == (1, 2, 30)
    assert 4.9 <= row["minutes_today"] <= 5.1
