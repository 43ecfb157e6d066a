"""The embed in headless Chromium: a host page on another loopback address (another site) embeds a
profile with the snippet and holds a whole conversation; a foreign site gets nothing; the host page
hears postMessage events from the site's origin; a phone gets the overlay."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import expect

from profiles.models import AvatarProfile
from sessions_app.emulator import agent
from sessions_app.emulator.models import EmulatedSession
from sessions_app.models import AvatarSession, SessionStatus
from tests.conftest import BROWSER_TIMEOUT_MS, FAKE_MIC, GRANT_MIC
from tests.waiting import transcript_caught_up_sync, wait_for

pytestmark = pytest.mark.e2e

HOST_ADDRESS = "127.0.0.2"  # another loopback address: another site than the Daphne on 127.0.0.1
OPENING = "Welcome to the front desk. Ask me about our opening hours."
# `EMBED_SCREENSHOTS=1 pytest tests/e2e/test_embed.py` writes the pictures to look at into docs/.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs"


class HostSite:
    """A page of another site, served by a plain HTTP server: the snippet, and a log of the events it hears."""

    def __init__(self, site_url: str, snippet: str | None = None):
        snippet = snippet or f'<script src="{site_url}/embed.js" data-profile="front-desk" async></script>'
        body = f"""<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Shop</title></head>
<body><h1>The shop</h1><p>Products and prices.</p>
<script>
window.heard = [];
window.addEventListener("message", (event) => {{
  if (String(event.data?.type).startsWith("avatar:")) window.heard.push({{origin: event.origin, ...event.data}});
}});
</script>
{snippet}
</body></html>""".encode()

        class Page(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((HOST_ADDRESS, 0), Page)
        self.url = f"http://{HOST_ADDRESS}:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host_site(daphne_server):
    sites = []

    def make(**kwargs) -> HostSite:
        site = HostSite(daphne_server.url, **kwargs)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.close()


def front_desk(*origins) -> AvatarProfile:
    return AvatarProfile.objects.create(
        slug="front-desk",
        name="Front desk",
        avatar_id=agent.SANDBOX_AVATAR_ID,
        context_id=agent.RECEPTION_CONTEXT_ID,
        allowed_origins=list(origins),
    )


def open_page(launch_browser, url=None, **context):
    page = launch_browser(FAKE_MIC, GRANT_MIC).new_page(**({"viewport": {"width": 1280, "height": 800}} | context))
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    if url:
        page.goto(url)
    return page


def heard(page) -> list[dict]:
    return page.evaluate("window.heard")


def test_an_allowed_site_embeds_the_profile_and_holds_a_whole_conversation(daphne_server, host_site, launch_browser):
    host = host_site()
    front_desk(host.url)
    page = open_page(launch_browser, host.url)
    page.get_by_role("button", name="Talk to Front desk").click()
    panel = page.locator("[data-avatar-embed=panel]")
    expect(panel).to_have_attribute("data-layout", "panel")
    frame = page.frame_locator("[data-avatar-embed=panel] iframe")
    assert page.locator("iframe").get_attribute("allow") == "microphone; autoplay"
    expect(frame.get_by_role("status")).to_have_text("Live")
    items = frame.get_by_role("region", name="Transcript").get_by_role("listitem")
    expect(items.first).to_have_text(f"Avatar: {OPENING}")
    expect(frame.locator("#avatar-speaking")).to_be_hidden()
    frame.get_by_label("Message").fill("What are your hours?")
    frame.get_by_role("button", name="Send").click()
    expect(items.nth(2)).to_have_text("Avatar: We are open from nine to five, Monday to Friday.")
    expect(frame.locator("#avatar-speaking")).to_be_hidden()
    if pytest.importorskip("os").environ.get("EMBED_SCREENSHOTS"):
        page.screenshot(path=str(SCREENSHOTS / "embed-desktop.png"))

    session = AvatarSession.objects.get()
    assert session.profile.slug == "front-desk" and session.status in (SessionStatus.STARTED, SessionStatus.ACTIVE)
    site = daphne_server.url
    ready, started = heard(page)[:2]
    assert ready == {"origin": site, "type": "avatar:ready"}
    assert started == {"origin": site, "type": "avatar:started", "session_id": str(session.id)}

    # Closing the panel ends the conversation: nothing is left running.
    panel.get_by_role("button", name="Close").click()
    expect(panel).to_have_count(0)
    expect(page.get_by_role("button", name="Talk to Front desk")).to_be_visible()
    assert heard(page)[-1] == {
        "origin": site,
        "type": "avatar:ended",
        "session_id": str(session.id),
        "end_reason": "USER_CLOSED",
    }
    wait_for(lambda: AvatarSession.objects.get().status == SessionStatus.ENDED)
    session = transcript_caught_up_sync(session.pk)
    assert session.end_reason == "USER_CLOSED"
    assert EmulatedSession.objects.get(pk=session.liveavatar_session_id).status == EmulatedSession.ENDED
    entries = list(session.transcript.values_list("speaker", "text"))
    assert entries[:3] == [
        ("avatar", OPENING),
        ("user", "What are your hours?"),
        ("avatar", "We are open from nine to five, Monday to Friday."),
    ]


def test_leaving_the_host_page_leaves_no_session_running(daphne_server, host_site, launch_browser):
    host = host_site()
    front_desk(host.url)
    page = open_page(launch_browser, host.url)
    page.get_by_role("button", name="Talk to Front desk").click()
    expect(page.frame_locator("iframe").get_by_role("status")).to_have_text("Live")
    page.goto(f"{host.url}/another-page")
    wait_for(lambda: AvatarSession.objects.get().status == SessionStatus.ENDED)
    # The page's keepalive stop to LiveAvatar and its forwarded beacon travel separately.
    emulated = EmulatedSession.objects.filter(pk=AvatarSession.objects.get().liveavatar_session_id)
    wait_for(lambda: emulated.get().status == EmulatedSession.ENDED)


def test_a_foreign_site_cannot_frame_the_page_and_mints_nothing(daphne_server, host_site, launch_browser):
    allowed = host_site()
    front_desk(allowed.url)
    # The snippet on a site that is not allowed shows nothing.
    foreign = host_site()
    page = open_page(launch_browser)
    with page.expect_request(lambda request: request.url.endswith("/p/front-desk/embed")):
        page.goto(foreign.url)
    page.wait_for_load_state("networkidle")  # the site's answer came, and the browser kept it from embed.js
    expect(page.get_by_role("button")).to_have_count(0)
    # Nor does a frame it builds itself: the browser refuses to show the page (frame-ancestors).
    framing = host_site(
        snippet=f'<iframe src="{daphne_server.url}/p/front-desk/?auto_start=1" allow="microphone"></iframe>'
    )
    page = open_page(launch_browser, framing.url)
    frame_page = page.frame_locator("iframe")
    page.wait_for_timeout(1000)
    expect(frame_page.locator("#start")).to_have_count(0)
    assert heard(page) == []
    assert not AvatarSession.objects.exists() and not EmulatedSession.objects.exists()


def test_a_phone_gets_the_conversation_as_a_full_screen_overlay(daphne_server, host_site, launch_browser):
    host = host_site()
    front_desk(host.url)
    page = open_page(launch_browser, host.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.get_by_role("button", name="Talk to Front desk").click()
    panel = page.locator("[data-avatar-embed=panel]")
    expect(panel).to_have_attribute("data-layout", "overlay")
    box = panel.bounding_box()
    assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 390, 844)
    expect(page.frame_locator("iframe").get_by_role("status")).to_have_text("Live")
    if pytest.importorskip("os").environ.get("EMBED_SCREENSHOTS"):
        page.screenshot(path=str(SCREENSHOTS / "embed-phone.png"))
    panel.get_by_role("button", name="Close").click()
    expect(panel).to_have_count(0)
    wait_for(lambda: AvatarSession.objects.get().status == SessionStatus.ENDED)
