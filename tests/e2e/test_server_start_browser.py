"""LIVEAVATAR_SESSION_START = "server": the site starts the session and the browser never holds the
session token: not in the page, its scripts, any request or answer, nor any websocket frame."""

import re

import pytest
from playwright.sync_api import expect

from sessions_app.emulator.models import EmulatedSession
from sessions_app.models import AvatarSession, SessionStatus
from tests.conftest import FAKE_MIC, GRANT_MIC

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(make_daphne_server):
    return make_daphne_server(env={"LIVEAVATAR_SESSION_START": "server"})


class Everything:
    """Every byte the page was sent or sent: documents, scripts, fetches, websocket frames."""

    def __init__(self, page):
        self.texts = []
        page.on("request", self.request)
        page.on("response", self.response)
        page.on("websocket", self.websocket)

    def request(self, request):
        self.texts += [request.url, str(request.headers), request.post_data or ""]

    def response(self, response):
        self.texts += [response.url, str(response.headers)]
        try:
            self.texts.append(response.text())
        except Exception:  # noqa: BLE001 - a redirect or a body already gone has no text
            pass

    def websocket(self, socket):
        self.texts.append(socket.url)
        socket.on("framesent", lambda payload: self.texts.append(str(payload)))
        socket.on("framereceived", lambda payload: self.texts.append(str(payload)))

    def holding(self, secret: str) -> list[str]:
        return [text[:200] for text in self.texts if secret in text]


def test_the_session_token_never_reaches_the_browser(server, launch_browser):
    page = launch_browser(FAKE_MIC, GRANT_MIC).new_page()
    seen = Everything(page)
    page.goto(server.url)
    session = AvatarSession.objects.get()
    token = session.start_token  # kept on the server until it starts the session
    assert str(EmulatedSession.for_token(token).id) == session.liveavatar_session_id

    page.get_by_role("button", name="Start conversation").click()
    expect(page.get_by_role("status")).to_have_text("Live")
    page.get_by_label("Message").fill("What are your hours?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#transcript li").last).to_have_text("Avatar: We are open from nine to five, Monday to Friday.")
    page.get_by_role("button", name="End conversation").click()
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^Ended\. You ended the conversation"))
    page.wait_for_function("() => window.avatarApp.conversation.forwarder.queue.size === 0")

    seen.texts += [page.content(), str(page.evaluate("JSON.stringify(window.avatarApp.conversation.config)"))]
    # The scan sees the page's config (it holds the LiveAvatar session id), and no token anywhere.
    assert seen.holding(session.liveavatar_session_id)
    assert seen.holding(token) == []
    session.refresh_from_db()
    assert session.start_token == ""  # used once, then forgotten
    assert (session.status, session.end_reason) == (SessionStatus.ENDED, "USER_CLOSED")
    emulated = EmulatedSession.objects.get(id=session.liveavatar_session_id)
    assert emulated.status == EmulatedSession.ENDED  # the page's stop went through the server
