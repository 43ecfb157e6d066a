"""The emulator refuses what LiveAvatar refuses and ends sessions the way it does."""

import time
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from livekit.api import TokenVerifier

BASE = "/liveavatar-emulator/v1"
FULL = {"mode": "FULL", "avatar_id": "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a", "avatar_persona": {"language": "en"}}

pytestmark = pytest.mark.django_db


def post(client, path, body=None, *, key=True, bearer=None):
    headers = {}
    if key:
        headers["X-API-KEY"] = settings.EMULATOR_API_KEY
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    return client.post(f"{BASE}{path}", body or {}, content_type="application/json", headers=headers)


def get(client, path, **params):
    return client.get(f"{BASE}{path}", params, headers={"X-API-KEY": settings.EMULATOR_API_KEY})


def started(client, **config):
    token = post(client, "/sessions/token", {**FULL, **config}).json()["data"]
    post(client, "/sessions/start", key=False, bearer=token["session_token"])
    return token


def test_it_mints_and_starts_a_session(client):
    token = post(client, "/sessions/token", {**FULL, "max_session_duration": 120}).json()["data"]
    response = post(client, "/sessions/start", key=False, bearer=token["session_token"])
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["livekit_url"] == "ws://testserver/liveavatar-emulator"
    assert data["max_session_duration"] == 120
    claims = TokenVerifier(settings.EMULATOR_LIVEKIT_API_KEY, settings.EMULATOR_LIVEKIT_API_SECRET).verify(
        data["livekit_client_token"]
    )
    assert claims.video.room == token["session_id"] and claims.identity.startswith("visitor-")


def test_its_session_tokens_are_jwts_naming_the_session_and_their_expiry(client):
    token = post(client, "/sessions/token", FULL).json()["data"]
    claims = jwt.decode(token["session_token"], options={"verify_signature": False})
    assert claims["sub"] == token["session_id"] and claims["exp"] > time.time()
    # Start accepts only a token it signed, and not once it has expired.
    forged = jwt.encode({**claims, "exp": int(time.time()) + 60}, "another-secret-another-secret-12", algorithm="HS256")
    expired = jwt.encode(
        {**claims, "exp": int(time.time()) - 1}, settings.EMULATOR_SESSION_TOKEN_SECRET, algorithm="HS256"
    )
    for bad in (forged, expired, "not-a-jwt"):
        response = post(client, "/sessions/start", key=False, bearer=bad)
        assert (response.status_code, response.json()["message"]) == (401, "Invalid session token")
    assert post(client, "/sessions/start", key=False, bearer=token["session_token"]).status_code == 201
    assert timedelta(seconds=claims["exp"] - claims["iat"]) == timedelta(hours=6)


def test_it_answers_the_max_duration_the_session_really_lasts(client, settings):
    settings.EMULATOR_SPEED = 20  # the page counts down from what start answers
    for config, seconds in [
        ({"max_session_duration": 60}, 3),
        ({"max_session_duration": 50}, 3),
        ({"is_sandbox": True}, 3),
        ({}, None),
    ]:
        token = post(client, "/sessions/token", {**FULL, **config}).json()["data"]
        response = post(client, "/sessions/start", key=False, bearer=token["session_token"])
        assert response.json()["data"]["max_session_duration"] == seconds, config


def test_it_refuses_the_api_key_on_start(client):
    post(client, "/sessions/token", FULL)
    response = post(client, "/sessions/start")
    assert response.status_code == 403
    assert response.json() == {"code": 4003, "data": None, "message": "Not authenticated"}


def test_it_refuses_minting_without_or_with_a_wrong_api_key(client):
    assert post(client, "/sessions/token", FULL, key=False).status_code == 403
    wrong = client.post(f"{BASE}/sessions/token", FULL, content_type="application/json", headers={"X-API-KEY": "x"})
    assert wrong.status_code == 401


def test_it_refuses_a_token_config_without_mode(client):
    response = post(client, "/sessions/token", {k: v for k, v in FULL.items() if k != "mode"})
    assert response.status_code == 422
    assert response.json()["code"] == 4000
    assert response.json()["message"] == (
        "Request validation errors. body: Unable to extract tag using discriminator 'mode'"
    )


@pytest.mark.parametrize("persona", [{}, {"avatar_persona": {}, "voice_agent": {"id": FULL["avatar_id"]}}])
def test_it_wants_exactly_one_of_persona_and_voice_agent(client, persona):
    body = {"mode": "FULL", "avatar_id": FULL["avatar_id"], **persona}
    response = post(client, "/sessions/token", body)
    assert response.status_code == 422 and response.json()["code"] == 4000
    assert "exactly one of avatar_persona or voice_agent" in response.json()["message"]


def test_it_requires_an_avatar_id(client):
    response = post(client, "/sessions/token", {"mode": "FULL", "avatar_persona": {}})
    assert response.status_code == 422 and "avatar_id" in response.json()["message"]


def test_it_requires_the_type_of_session_list(client):
    assert get(client, "/sessions").status_code == 422
    assert get(client, "/sessions", type="active").json()["data"]["count"] == 0


def test_it_stops_with_the_session_token_and_records_the_reason(client):
    token = started(client)
    assert (
        post(
            client, "/sessions/stop", {"reason": "USER_DISCONNECTED"}, key=False, bearer=token["session_token"]
        ).status_code
        == 200
    )
    entry = get(client, f"/sessions/{token['session_id']}").json()["data"]
    assert entry["end_reason"] == "USER_DISCONNECTED"
    assert get(client, "/sessions", type="historic").json()["data"]["count"] == 1


def test_it_keeps_alive_with_the_api_key_and_a_session_id(client):
    token = started(client)
    assert post(client, "/sessions/keep-alive", {"session_id": token["session_id"]}).status_code == 200
    assert post(client, "/sessions/keep-alive", {}).status_code == 422
    assert (
        post(client, "/sessions/keep-alive", {"session_id": "3c90c3cc-0d44-4b50-8888-8dd25736052a"}).status_code == 404
    )


def test_it_ends_sandbox_sessions_after_a_minute(client, settings):
    settings.EMULATOR_SPEED = 600  # a minute lasts 0.1 s
    token = started(client, is_sandbox=True)
    time.sleep(0.15)
    entry = get(client, f"/sessions/{token['session_id']}").json()["data"]
    assert entry["end_reason"] == "MAX_DURATION_REACHED"


def test_it_ends_idle_sessions_unless_kept_alive(client, settings):
    settings.EMULATOR_SPEED = 600  # idle timeout 0.5 s
    idle = started(client, max_session_duration=3600)
    kept = started(client, max_session_duration=3600)
    for _ in range(4):
        time.sleep(0.2)
        post(client, "/sessions/keep-alive", key=False, bearer=kept["session_token"])
    assert get(client, f"/sessions/{idle['session_id']}").json()["data"]["end_reason"] == "IDLE_TIMEOUT"
    assert "end_reason" not in get(client, f"/sessions/{kept['session_id']}").json()["data"]


def test_it_ends_sessions_at_their_max_duration(client, settings):
    settings.EMULATOR_SPEED = 600
    token = started(client, max_session_duration=30)  # 0.05 s here
    time.sleep(0.1)
    active = get(client, "/sessions", type="active").json()["data"]
    assert active["count"] == 0
    assert get(client, f"/sessions/{token['session_id']}").json()["data"]["end_reason"] == "MAX_DURATION_REACHED"
    assert post(client, "/sessions/keep-alive", key=False, bearer=token["session_token"]).status_code == 400


def test_it_lists_the_account_resources(client):
    assert get(client, "/avatars").json()["data"]["results"][0]["name"] == "Wayne"
    assert client.get(f"{BASE}/avatars/public").status_code == 200
    assert get(client, "/voices").json()["data"]["count"] == 2
    agents = get(client, "/voice_agents").json()["data"]["results"]
    assert [agent["name"] for agent in agents] == ["Front desk agent"]
    assert get(client, f"/voice_agents/{agents[0]['id']}").json()["data"]["agent_configuration"]["context_id"]
    assert get(client, "/voice_agents/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.get(f"{BASE}/voice_agents").status_code == 403  # the API key is needed
    context_id = get(client, "/contexts").json()["data"]["results"][0]["id"]
    assert get(client, f"/contexts/{context_id}").json()["data"]["opening_text"]
    assert client.get(f"{BASE}/languages").json()["data"][0]["code"] == "en"
    assert get(client, "/users/credits").json()["data"]["credits_left"]
