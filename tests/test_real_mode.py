"""With a real LiveAvatar API key the emulator is not there at all, and a LiveAvatar that cannot be
reached gives the visitor words, not a server error (a real Daphne process, started with the key)."""

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import free_port

KEY = "la-test-not-a-real-key"


@pytest.fixture
def real_server(make_daphne_server):
    # Nothing listens on the port: every LiveAvatar call fails to connect.
    return make_daphne_server(env={"LIVEAVATAR_API_KEY": KEY, "LIVEAVATAR_API_URL": f"http://127.0.0.1:{free_port()}"})


def test_the_emulator_is_not_mounted(real_server):
    assert httpx.get(f"{real_server.url}/healthz").json()["liveavatar"] == "real"
    # With the emulator's own key, so only a missing route can explain a 404.
    response = httpx.get(f"{real_server.url}/liveavatar-emulator/v1/avatars", headers={"X-API-KEY": KEY})
    assert response.status_code == 404
    # Nor is the emulated LiveKit server: no signaling socket, no validate endpoint.
    with pytest.raises(InvalidStatus):
        connect(
            f"{real_server.ws_url}/liveavatar-emulator/rtc/v1?access_token=x", origin=real_server.url, open_timeout=5
        ).close()
    assert httpx.get(f"{real_server.url}/liveavatar-emulator/rtc/v1/validate?access_token=x").status_code == 404


def test_the_visitor_is_told_the_avatar_service_cannot_be_reached(real_server):
    response = httpx.get(real_server.url, timeout=30)
    assert response.status_code == 503
    assert "The avatar service is not available right now." in response.text
    assert 'id="start" type="button" class="primary" disabled' in response.text
    assert KEY not in response.text
