"""The visitor page in headless Chromium against a live Daphne with the built-in emulator.

What a visitor sees (states, transcript, messages) and what the server then holds (events in
order with none missing, the transcript, the session's end) are both checked.
"""

import os
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from sessions_app.models import AvatarSession, SessionEvent, SessionStatus, TranscriptEntry

# Playwright's sync API runs an event loop in this thread; the ORM calls of the tests are fine.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
BASE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--use-fake-device-for-media-stream"]
# Without the fake UI flag, Chromium answers getUserMedia with "permission denied".
MIC_ALLOWED = [*BASE_ARGS, "--use-fake-ui-for-media-stream"]
OPENING = "Hello! I am the emulated avatar. What would you like to talk about?"
TIMEOUT = 15_000


@pytest.fixture(scope="module")
def playwright():
    with sync_playwright() as p:
        yield p


@pytest.fixture
def launch(playwright):
    browsers = []

    def launch(args=MIC_ALLOWED):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        browsers.append(browser)
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT)
        expect.set_options(timeout=TIMEOUT)
        return page

    yield launch
    for browser in browsers:
        browser.close()


def record_states(page):
    """Keep every text the status element shows, to check the page went through each state."""
    page.evaluate("""() => {
        window.seenStates = [document.getElementById('state').dataset.state];
        new MutationObserver(() => window.seenStates.push(document.getElementById('state').dataset.state))
            .observe(document.getElementById('state'), {attributes: true, childList: true, subtree: true});
    }""")


def seen_states(page):
    states = page.evaluate("window.seenStates")
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


def start(page, url):
    page.goto(url)
    record_states(page)
    expect(page.get_by_role("status")).to_have_text("Ready to start")
    page.get_by_role("button", name="Start conversation").click()
    expect(page.get_by_role("status")).to_have_text("Live")


def transcript_items(page):
    return page.get_by_role("region", name="Transcript").get_by_role("listitem")


def wait_avatar_quiet(page):
    expect(page.locator("#avatar-speaking")).to_be_hidden()


def session_id(page) -> str:
    return page.evaluate("window.avatarApp.conversation.config.session_id")


def wait_forwarded(page):
    """Every event the page made is acknowledged by the server (stored)."""
    page.wait_for_function("window.avatarApp.conversation.forwarder.queue.size === 0")


def stored_seqs(sid):
    return list(SessionEvent.objects.filter(session_id=sid).order_by("seq").values_list("seq", flat=True))


def test_it_holds_a_whole_conversation(daphne_server, launch):
    page = launch()
    start(page, daphne_server.url)
    items = transcript_items(page)
    expect(items.first).to_have_text(f"Avatar: {OPENING}")
    expect(page.locator("#video canvas")).to_be_visible()
    wait_avatar_quiet(page)

    page.get_by_label("Message").fill("What are your hours?")
    page.get_by_role("button", name="Send").click()
    expect(items.nth(1)).to_have_text("You (typed): What are your hours?")
    expect(items.nth(2)).to_have_text("Avatar: We are open from nine to five, Monday to Friday.")
    wait_avatar_quiet(page)

    page.evaluate("window.avatarApp.simulateUserSays('Hello there')")
    expect(items.nth(3)).to_have_text("You: Hello there")
    expect(items.nth(4)).to_have_text("Avatar: Hello! How can I help you today?")
    wait_avatar_quiet(page)

    page.get_by_label("Say exactly").check()
    page.get_by_label("Message").fill("This is a very long sentence that the avatar will not be able to finish at all today")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#avatar-speaking")).to_be_visible()
    page.get_by_role("button", name="Interrupt").click()
    expect(items.nth(5)).to_contain_text("(interrupted)")
    wait_avatar_quiet(page)

    page.get_by_role("button", name="Start listening").click()
    expect(page.get_by_role("button", name="Stop listening")).to_be_visible()
    page.get_by_role("button", name="Stop listening").click()
    page.get_by_role("button", name="Mute").click()
    expect(page.get_by_role("button", name="Unmute")).to_be_visible()

    sid = session_id(page)
    last_seq = page.evaluate("window.avatarApp.conversation.forwarder.queue.next - 1")
    page.get_by_role("button", name="End conversation").click()
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^Ended\. You ended the conversation"))
    expect(page.get_by_role("button", name="Start a new conversation")).to_be_visible()
    assert seen_states(page) == ["idle", "connecting", "live", "ending", "ended"]
    wait_forwarded(page)

    session = AvatarSession.objects.get(id=sid)
    assert session.status == SessionStatus.ENDED
    assert session.end_reason == "USER_CLOSED"
    seqs = stored_seqs(sid)
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > last_seq
    types = list(SessionEvent.objects.filter(session_id=sid).values_list("event_type", flat=True))
    for expected in ["client.token_received", "client.start_requested", "client.started", "client.connected",
                     "client.participants_ready", "client.media_ready", "client.mic", "avatar.speak_response",
                     "emulator.user_says", "user.transcription", "avatar.interrupt", "avatar.start_listening",
                     "avatar.stop_listening", "client.stop_requested", "client.stopped"]:
        assert expected in types, expected
    assert types.index("client.started") < types.index("client.connected") < types.index("client.stopped")
    entries = [(e.speaker, e.text, e.interrupted) for e in TranscriptEntry.objects.filter(session_id=sid)]
    print(entries)
