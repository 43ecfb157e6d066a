"""Token on page visit, "Start a new conversation", and the health check."""

import json
import re

import httpx
import pytest
from django.contrib.sessions.models import Session
from django.test import Client, RequestFactory

from sessions_app import views
from sessions_app.minting import mint_session
from sessions_app.models import AvatarSession, SessionStatus

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "la-live-0123456789-secret"


def page_config(response) -> dict:
    found = re.search(r'<script id="avatar-config" type="application/json">(.*?)</script>', response.content.decode())
    return json.loads(found.group(1))


@pytest.fixture
def liveavatar_answers(settings):
    """Make the LiveAvatar network (the client's httpx transport) answer with the given response."""

    def answer(response):
        settings.LIVEAVATAR_TRANSPORT = lambda: httpx.MockTransport(lambda request: response)

    return answer


def test_it_mints_a_token_for_the_page_and_never_shows_the_api_key(client, settings):
    # The key the emulator accepts is the secret here, so the page is built with a real-looking key in play.
    settings.LIVEAVATAR_API_KEY = settings.EMULATOR_API_KEY = SECRET
    response = client.get("/")
    assert response.status_code == 200
    assert SECRET not in response.content.decode()
    config = page_config(response)
    session = AvatarSession.objects.get()
    assert config["session_id"] == str(session.id)
    assert config["liveavatar_session_id"] == session.liveavatar_session_id
    assert config["session_token"] and config["liveavatar_api_url"] == "http://testserver/liveavatar-emulator"
    assert config["events_ws_url"].startswith(f"/ws/sessions/{session.id}/events/?credential=")
    assert config["events_http_url"].startswith(f"/sessions/{session.id}/events?credential=")
    assert (config["emulator"], config["interactivity"]) == (True, "CONVERSATIONAL")
    assert session.status == SessionStatus.CREATED
    # The visitor is known by a signed random id (httponly, SameSite=Lax), with no Django session stored.
    cookie = client.cookies[views.VISITOR_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    returning = RequestFactory().get("/", headers={"Cookie": f"{views.VISITOR_COOKIE}={cookie.value}"})
    assert views._visitor_key(returning) == (session.visitor_key, False)
    assert not Session.objects.exists() and settings.SESSION_COOKIE_NAME not in client.cookies
    assert SECRET not in json.dumps(session.config)


def test_it_mints_over_http_from_an_emulator_in_another_process(client, settings, daphne_server):
    # Reached as the real service is: over HTTP, through the network transport.
    settings.LIVEAVATAR_EMULATOR_URL = f"{daphne_server.url}/liveavatar-emulator"
    settings.LIVEAVATAR_TRANSPORT = ""
    response = client.get("/")
    config = page_config(response)
    session = AvatarSession.objects.get()
    assert config["session_token"] and config["liveavatar_session_id"] == session.liveavatar_session_id
    remote = httpx.get(
        f"{settings.LIVEAVATAR_EMULATOR_URL}/v1/sessions/{session.liveavatar_session_id}",
        headers={"X-API-KEY": settings.EMULATOR_API_KEY},
    )
    assert remote.status_code == 200


def test_it_tells_the_visitor_when_liveavatar_fails_and_stores_the_failure(client, liveavatar_answers):
    liveavatar_answers(httpx.Response(402, json={"code": 4002, "data": None, "message": "Insufficient credits"}))
    response = client.get("/")
    assert response.status_code == 503
    assert "no conversation credits" in page_config(response)["error"]
    assert "no conversation credits" in response.content.decode()
    session = AvatarSession.objects.get()
    assert session.status == SessionStatus.FAILED and "credits" in session.error


def test_it_says_the_service_is_down_when_it_is(client, liveavatar_answers):
    liveavatar_answers(httpx.Response(503, text="upstream connect error"))
    assert "not available" in page_config(client.get("/"))["error"]


def test_it_limits_how_often_a_visitor_mints(client, settings):
    settings.MINT_RATE_PER_MINUTE = 2
    assert client.get("/").status_code == 200
    assert client.get("/").status_code == 200
    response = client.get("/")
    assert response.status_code == 429
    assert "wait a minute" in page_config(response)["error"]
    assert AvatarSession.objects.count() == 2
    assert Client().get("/").status_code == 200  # another visitor is not held back


def test_it_starts_a_new_conversation_without_a_reload():
    client = Client(enforce_csrf_checks=True)
    first = page_config(client.get("/"))
    own = {"Origin": "http://testserver"}
    # The page's signed ticket, sent from the site's own origin, is what lets it mint.
    assert client.post(first["new_session_url"], headers=own).status_code == 403
    ticket = {"X-Mint-Ticket": first["mint_ticket"]}
    assert client.post(first["new_session_url"], headers={**ticket, "Origin": "http://evil.test"}).status_code == 403
    response = client.post(first["new_session_url"], headers={**ticket, **own})
    assert response.status_code == 200
    config = response.json()
    assert config["session_token"] and config["session_id"] != first["session_id"]
    assert config["auto_start"] is True
    first_visitor = AvatarSession.objects.get(pk=first["session_id"]).visitor_key
    assert AvatarSession.objects.get(pk=config["session_id"]).visitor_key == first_visitor


def test_it_reports_health():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "channel_layer": "ok", "liveavatar": "emulator"}


def test_it_reports_a_channel_layer_that_is_down(client, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1"]},
        }
    }
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["channel_layer"] == "down"


def test_it_reports_a_database_that_is_down(make_daphne_server):
    server = make_daphne_server(env={"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"})
    response = httpx.get(f"{server.url}/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "down", "channel_layer": "ok", "liveavatar": "emulator"}


async def test_it_mints_with_the_allowed_overrides_only():
    session, token = await mint_session(
        visitor_key="api:partner",
        created_via="api",
        overrides={
            "is_sandbox": True,
            "interactivity_type": "PUSH_TO_TALK",
            "max_session_duration": 90,
            "language": "fr",
        },
    )
    assert token and session.liveavatar_session_id
    assert (session.is_sandbox, session.interactivity, session.max_session_duration) == (True, "PUSH_TO_TALK", 90)
    assert session.config["avatar_persona"]["language"] == "fr" and session.created_via == "api"
    with pytest.raises(ValueError):
        await mint_session(visitor_key="api:partner", overrides={"avatar_id": "someone-else"})
