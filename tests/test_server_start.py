"""LIVEAVATAR_SESSION_START = "server" without a browser: the page's config, and the start, keep-alive
and stop the page asks this site for (made against the emulator in process)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app import credentials
from sessions_app.emulator.models import EmulatedSession
from sessions_app.models import AvatarSession

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server_start(settings):
    settings.LIVEAVATAR_SESSION_START = "server"


def page_config(client):
    response = client.get("/")
    return response.context["config"], response


def test_the_page_gets_no_session_token_and_the_server_keeps_it(client, server_start):
    config, response = page_config(client)
    session = AvatarSession.objects.get()
    assert session.start_token and session.start_token.encode() not in response.content
    assert "session_token" not in config and "liveavatar_api_url" not in config
    assert config["session_start"] == "server"
    assert config["start_url"].startswith(f"/sessions/{session.id}/start?credential=")


def test_the_server_starts_the_session_once_and_answers_only_the_room(client, server_start):
    config, _ = page_config(client)
    response = client.post(config["start_url"], content_type="application/json")
    assert response.status_code == 200
    assert sorted(response.json()) == ["livekit_client_token", "livekit_url", "max_session_duration"]
    assert response.json()["livekit_url"] == "ws://testserver/liveavatar-emulator"  # livekit-client adds /rtc
    session = AvatarSession.objects.get()
    assert session.start_token == ""
    assert EmulatedSession.objects.get(id=session.liveavatar_session_id).status == EmulatedSession.STARTED

    again = client.post(config["start_url"], content_type="application/json")
    assert (again.status_code, again.json()["message"]) == (409, "This conversation was started already.")


def test_keep_alive_and_stop_go_through_the_server(client, server_start):
    config, _ = page_config(client)
    client.post(config["start_url"], content_type="application/json")
    emulated = EmulatedSession.objects.get(id=AvatarSession.objects.get().liveavatar_session_id)
    before = emulated.last_activity_at
    assert client.post(config["keep_alive_url"], content_type="application/json").status_code == 200
    emulated.refresh_from_db()
    assert emulated.last_activity_at > before

    bad = client.post(config["stop_url"], json.dumps({"reason": "NO_CREDITS"}), content_type="application/json")
    assert (bad.status_code, bad.json()["message"]) == (400, "reason must be one of USER_CLOSED, USER_DISCONNECTED.")
    stop = client.post(config["stop_url"], json.dumps({"reason": "USER_CLOSED"}), content_type="application/json")
    assert stop.status_code == 200
    emulated.refresh_from_db()
    assert (emulated.status, emulated.end_reason) == (EmulatedSession.ENDED, "USER_CLOSED")
    # Stopping again finds it gone at LiveAvatar, which is what the page wanted.
    assert client.post(config["stop_url"], content_type="application/json").status_code == 200


def test_the_page_calls_need_the_sessions_credential(client, server_start):
    page_config(client)
    session = AvatarSession.objects.get()
    other = AvatarSession.objects.create()
    for path in ("start", "keep-alive", "stop"):
        response = client.post(f"/sessions/{session.id}/{path}?credential={credentials.mint(other.id)}")
        assert response.status_code == 401, path
    assert AvatarSession.objects.get(pk=session.pk).start_token  # nothing was started


def test_browser_start_is_the_default_and_keeps_no_token(client):
    config, _ = page_config(client)
    assert config["session_start"] == "browser" and config["session_token"]
    assert AvatarSession.objects.get().start_token == ""


async def test_a_token_never_used_is_dropped_when_the_session_expires(settings):
    from sessions_app import lifecycle

    settings.LIVEAVATAR_SESSION_START = "server"
    session = await AvatarSession.objects.acreate(start_token="tok", created_at=timezone.now() - timedelta(days=1))
    assert (await lifecycle.reap_orphans())["expired"] == 1
    await session.arefresh_from_db()
    assert (session.status, session.start_token) == ("expired", "")


def test_an_unknown_session_start_is_refused_by_the_checks(settings):
    from sessions_app.checks import check_liveavatar

    settings.LIVEAVATAR_SESSION_START = "client"
    assert [m.id for m in check_liveavatar(None)] == ["sessions_app.E004"]
