"""The LiveAvatar client: against the emulator over real HTTP, and its error mapping at the network edge."""

import logging
import time

import httpx
import pytest
from django.conf import settings

from sessions_app.liveavatar import LiveAvatarClient, LiveAvatarError, get_client

FULL = {"mode": "FULL", "avatar_id": "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a", "avatar_persona": {"language": "en"}}
SECRET = "la-secret-key-do-not-leak"


def mocked(*responses, max_retries=2):
    """A client whose network answers with `responses` in turn (a callable may raise); records requests."""
    requests = []

    def handler(request):
        requests.append(request)
        answer = responses[min(len(requests), len(responses)) - 1]
        return answer(request) if callable(answer) else answer

    client = LiveAvatarClient(
        "https://api.example", SECRET, max_retries=max_retries, transport=httpx.MockTransport(handler)
    )
    return client, requests


def envelope(status, code, message="", data=None, headers=None):
    return httpx.Response(status, json={"code": code, "data": data, "message": message}, headers=headers)


# Against the emulator served by a live Daphne


async def test_it_runs_a_session_against_the_emulator(daphne_server):
    client = LiveAvatarClient(f"{daphne_server.url}/liveavatar-emulator", settings.EMULATOR_API_KEY)
    token = await client.create_token(FULL)
    started = await client.start(token["session_token"])
    assert started["session_id"] == token["session_id"]
    assert started["livekit_url"] == f"{daphne_server.ws_url}/liveavatar-emulator"
    await client.keep_alive(session_token=token["session_token"])
    await client.keep_alive(session_id=token["session_id"])
    assert (await client.list_sessions("active"))["count"] == 1
    await client.stop(session_id=token["session_id"], reason="USER_CLOSED")
    assert (await client.get_session(token["session_id"]))["end_reason"] == "USER_CLOSED"
    assert (await client.transcript(token["session_id"]))["session_active"] is False


async def test_it_reports_the_emulators_refusals(daphne_server):
    wrong_key = LiveAvatarClient(f"{daphne_server.url}/liveavatar-emulator", "not-the-key")
    with pytest.raises(LiveAvatarError) as refused:
        await wrong_key.create_token(FULL)
    assert (refused.value.status, refused.value.kind) == (401, "auth")
    client = LiveAvatarClient(f"{daphne_server.url}/liveavatar-emulator", settings.EMULATOR_API_KEY)
    with pytest.raises(LiveAvatarError) as invalid:
        await client.create_token({"avatar_id": FULL["avatar_id"]})
    assert (invalid.value.status, invalid.value.code, invalid.value.kind) == (422, 4000, "validation")
    assert "discriminator 'mode'" in invalid.value.message


# Error mapping, injected at the transport


async def test_it_accepts_both_success_codes_and_unwrapped_bodies():
    client, _ = mocked(envelope(200, 100, data={"session_id": "s", "session_token": "t"}))
    assert await client.create_token(FULL) == {"session_id": "s", "session_token": "t"}
    client, _ = mocked(httpx.Response(200, json={"session_id": "s", "session_token": "t"}))
    assert (await client.create_token(FULL))["session_token"] == "t"


async def test_it_maps_403_to_a_bad_key():
    client, requests = mocked(envelope(403, 4003, "Not authenticated"))
    with pytest.raises(LiveAvatarError) as error:
        await client.create_token(FULL)
    assert (error.value.status, error.value.code, error.value.kind) == (403, 4003, "auth")
    assert "API key" in error.value.visitor_message
    assert len(requests) == 1


async def test_it_maps_422_details_to_a_validation_error():
    client, _ = mocked(httpx.Response(422, json={"detail": [{"loc": ["body"], "msg": "Input should be a valid UUID"}]}))
    with pytest.raises(LiveAvatarError) as error:
        await client.create_token(FULL)
    assert error.value.kind == "validation" and error.value.message == "Input should be a valid UUID"


async def test_it_tells_visitors_about_missing_credits():
    client, _ = mocked(envelope(402, 4002, "Insufficient credits"))
    with pytest.raises(LiveAvatarError) as error:
        await client.create_token(FULL)
    assert error.value.kind == "no_credits" and "credits" in error.value.visitor_message


async def test_it_retries_idempotent_calls_on_500_then_gives_up():
    client, requests = mocked(envelope(500, 5000, "boom"))
    with pytest.raises(LiveAvatarError) as error:
        await client.get_session("s")
    assert error.value.kind == "unavailable" and len(requests) == 3
    assert "not available" in error.value.visitor_message


async def test_it_does_not_retry_minting_on_500():
    client, requests = mocked(envelope(500, 5000, "boom"))
    with pytest.raises(LiveAvatarError):
        await client.create_token(FULL)
    assert len(requests) == 1


async def test_it_honours_a_short_retry_after_on_429():
    client, requests = mocked(
        envelope(429, 4029, "slow down", headers={"Retry-After": "0.3"}),
        envelope(200, 1000, data={"session_id": "s", "session_token": "t"}),
    )
    began = time.monotonic()
    assert (await client.create_token(FULL))["session_id"] == "s"
    assert len(requests) == 2 and time.monotonic() - began >= 0.3


async def test_it_fails_at_once_when_retry_after_is_long():
    client, requests = mocked(envelope(429, 4029, "slow down", headers={"Retry-After": "120"}))
    with pytest.raises(LiveAvatarError) as error:
        await client.list_avatars()
    assert (error.value.kind, error.value.retry_after, len(requests)) == ("rate_limited", 120, 1)
    assert "busy" in error.value.visitor_message


async def test_it_maps_timeouts_and_retries_only_safe_calls():
    def slow(request):
        raise httpx.ReadTimeout("too slow", request=request)

    client, requests = mocked(slow)
    with pytest.raises(LiveAvatarError) as error:
        await client.create_token(FULL)
    assert error.value.kind == "timeout" and len(requests) == 1
    client, requests = mocked(slow, envelope(200, 1000))
    await client.stop(session_id="s")
    assert len(requests) == 2


async def test_it_retries_minting_when_the_connection_was_refused():
    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    client, requests = mocked(refused, envelope(200, 1000, data={"session_id": "s", "session_token": "t"}))
    assert (await client.create_token(FULL))["session_id"] == "s"
    assert len(requests) == 2


async def test_it_uses_the_right_credential_for_each_call():
    client, requests = mocked(envelope(201, 1000, data={}))
    await client.start("session-token")
    await client.stop(session_id="s")
    assert requests[0].headers["Authorization"] == "Bearer session-token"
    assert "X-API-KEY" not in requests[0].headers
    assert requests[1].headers["X-API-KEY"] == SECRET


async def test_it_never_shows_the_api_key(caplog):
    caplog.set_level(logging.DEBUG)
    client, _ = mocked(envelope(500, 5000, f"echo {SECRET[:3]}"))
    with pytest.raises(LiveAvatarError) as error:
        await client.list_voices()
    assert SECRET not in repr(client) + str(error.value) + repr(error.value) + caplog.text


# The configured backend (settings)


@pytest.mark.django_db(transaction=True)
async def test_it_reaches_the_emulator_in_process_with_no_server_running():
    token = await get_client().create_token(FULL)
    assert token["session_token"]
    assert (await get_client().get_session(token["session_id"]))["id"] == token["session_id"]


async def test_with_a_key_it_calls_liveavatar_with_that_key_through_the_configured_transport(settings):
    requests = []

    def handler(request):
        requests.append(request)
        return envelope(200, 1000, data={"session_id": "s", "session_token": "t"})

    settings.LIVEAVATAR_API_KEY, settings.LIVEAVATAR_EMULATOR = SECRET, False
    settings.LIVEAVATAR_TRANSPORT = lambda: httpx.MockTransport(handler)
    assert (await get_client().create_token(FULL))["session_token"] == "t"
    assert str(requests[0].url) == f"{settings.LIVEAVATAR_API_URL}/v1/sessions/token"
    assert requests[0].headers["X-API-KEY"] == SECRET
