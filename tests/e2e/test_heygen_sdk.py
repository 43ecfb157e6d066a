"""HeyGen's own web SDK (`@heygen/liveavatar-web-sdk`, which bundles livekit-client 2.15.7 and so the
legacy two-connection signaling) holds a session against the built-in emulator in Chromium."""

import subprocess
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from sessions_app.emulator import agent
from sessions_app.emulator.models import EmulatedSession
from tests.conftest import BROWSER_TIMEOUT_MS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# The SDK's own example, as a page: the test reads what it did from window.sdk.
ENTRY = """
import { AgentEventsEnum, LiveAvatarSession, SessionEvent } from "@heygen/liveavatar-web-sdk";

window.sdk = { events: [], states: [], streamReady: false };
window.startSession = async (sessionToken, apiUrl) => {
  const session = new LiveAvatarSession(sessionToken, { apiUrl, voiceChat: false });
  window.sdk.session = session;
  session.on(SessionEvent.SESSION_STATE_CHANGED, (state) => window.sdk.states.push(state));
  session.on(SessionEvent.SESSION_STREAM_READY, () => {
    window.sdk.streamReady = true;
    session.attach(document.getElementById("avatar"));
  });
  for (const type of [AgentEventsEnum.AVATAR_TRANSCRIPTION, AgentEventsEnum.AVATAR_SPEAK_ENDED]) {
    session.on(type, (event) => window.sdk.events.push(event));
  }
  await session.start();
};
"""
PAGE = (
    '<!doctype html><video id="avatar" autoplay playsinline muted></video><script type="module" src="sdk.js"></script>'
)


@pytest.fixture(scope="module")
def sdk_bundle():
    return subprocess.run(
        [ROOT / "node_modules/.bin/esbuild", "--bundle", "--format=esm", "--log-level=warning", "--loader=js"],
        input=ENTRY,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def test_heygens_web_sdk_holds_a_session(daphne_server, launch_browser, sdk_bundle):
    # The test page is fulfilled by the test, not fetched from 127.0.0.1, so Chromium would count it
    # as public and block its calls to the loopback server.
    page = launch_browser("--disable-features=LocalNetworkAccessChecks").new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    page.route(f"{daphne_server.url}/heygen-sdk/", lambda route: route.fulfill(body=PAGE, content_type="text/html"))
    page.route(
        f"{daphne_server.url}/heygen-sdk/sdk.js",
        lambda route: route.fulfill(body=sdk_bundle, content_type="text/javascript"),
    )
    api = f"{daphne_server.url}/liveavatar-emulator"
    minted = httpx.post(
        f"{api}/v1/sessions/token",
        headers={"X-API-KEY": settings.EMULATOR_API_KEY},
        json={
            "mode": "FULL",
            "avatar_id": "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a",
            "avatar_persona": {"language": "en"},
        },
    ).json()["data"]
    page.goto(f"{daphne_server.url}/heygen-sdk/")
    page.wait_for_function("() => window.startSession")

    page.evaluate("([token, api]) => window.startSession(token, api)", [minted["session_token"], api])
    assert page.evaluate("window.sdk.session.state") == "CONNECTED"
    # The avatar's tracks arrive and play.
    page.wait_for_function("() => window.sdk.streamReady")
    page.wait_for_function("() => document.getElementById('avatar').videoWidth > 0")
    page.wait_for_function("() => window.sdk.events.some((e) => e.event_type === 'avatar.speak_ended')")

    event_id = page.evaluate("window.sdk.session.message('What are your hours?')")
    page.wait_for_function(
        "(id) => window.sdk.events.some((e) => e.event_type === 'avatar.speak_ended' && e.source_event_id === id)",
        arg=event_id,
    )
    answer = page.evaluate(
        "(id) => window.sdk.events.find((e) => e.event_type === 'avatar.transcription' && e.source_event_id === id)",
        event_id,
    )
    assert answer["text"] == agent.reply("What are your hours?")

    with page.expect_response(lambda response: response.url.endswith("/v1/sessions/stop")) as stopped:
        page.evaluate("window.sdk.session.stop()")
    assert stopped.value.status == 200
    page.wait_for_function("() => window.sdk.states.includes('DISCONNECTED')")
    session = EmulatedSession.objects.get(id=minted["session_id"])
    assert session.status == EmulatedSession.ENDED
