"""The visitor page in headless Chromium against a live Daphne with the built-in emulator.

What a visitor sees (states, transcript, messages) and what the server then holds (events in
order with none missing, the transcript, the session's end) are both checked.
"""

import gzip
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from profiles.models import AvatarProfile
from sessions_app.emulator.models import EmulatedSession
from sessions_app.models import AvatarSession, SessionEvent, SessionStatus, TranscriptEntry
from tests.conftest import BROWSER_TIMEOUT_MS, FAKE_MIC, GRANT_MIC, free_port
from tests.tcp_proxy import PausableProxy
from tests.waiting import transcript_caught_up_sync

pytestmark = pytest.mark.e2e

MIC_ALLOWED = (FAKE_MIC, GRANT_MIC)
MIC_DENIED = (FAKE_MIC,)  # without GRANT_MIC, Chromium answers getUserMedia with "permission denied"
OPENING = "Hello! I am the emulated avatar. What would you like to talk about?"
# About 240 words: several seconds of speech even at the tests' speed, so the Interrupt click lands
# while the avatar is still speaking on a slow machine.
LONG_SENTENCE = " ".join(["This is a very long sentence that the avatar will not be able to finish at all today"] * 11)
ROOT = Path(__file__).resolve().parents[2]
# `README_SCREENSHOT=1 pytest tests/e2e` refreshes the README's picture; plain runs leave the tree clean.
SCREENSHOT = ROOT / "docs" / "visitor-desktop.png"


@pytest.fixture
def launch(launch_browser):
    def launch(flags=MIC_ALLOWED):
        page = launch_browser(*flags).new_page(viewport={"width": 1200, "height": 760})
        page.set_default_timeout(BROWSER_TIMEOUT_MS)
        return page

    return launch


def record_states(page):
    """Keep every state the status element goes through (even two changes in one task)."""
    page.evaluate("""() => {
        window.seenStates = [];
        new MutationObserver((records) => window.seenStates.push(...records.map((r) => r.oldValue)))
            .observe(document.getElementById('state'), {attributeFilter: ['data-state'], attributeOldValue: true});
    }""")


def seen_states(page):
    states = page.evaluate("() => [...window.seenStates, document.getElementById('state').dataset.state]")
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


def count_stops(page) -> list:
    """The page's stop calls: to LiveAvatar, or to this site when the server starts sessions."""
    stops = []
    page.on(
        "request", lambda request: stops.append(request.url) if urlsplit(request.url).path.endswith("/stop") else None
    )
    return stops


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
    page.wait_for_function("() => window.avatarApp.conversation.forwarder.queue.size === 0")


def end_with_every_event_stored(page):
    """End the conversation; every event the page made is stored, none missing, and folded into the
    transcript (returns the session id)."""
    sid = session_id(page)
    page.get_by_role("button", name="End conversation").click()
    expect(page.get_by_role("status")).to_have_text(re.compile("^Ended"))
    made = page.evaluate("window.avatarApp.conversation.forwarder.queue.next - 1")
    wait_forwarded(page)
    assert stored_seqs(sid) == list(range(1, made + 1))
    transcript_caught_up_sync(sid)
    return sid


def stored_seqs(sid):
    return list(SessionEvent.objects.filter(session_id=sid).order_by("seq").values_list("seq", flat=True))


@pytest.fixture(params=["browser", "server"])
def any_start_server(request, make_daphne_server):
    """The site with the page starting sessions (the default), or with the server starting them."""
    return make_daphne_server(env={"LIVEAVATAR_SESSION_START": request.param})


def test_it_holds_a_whole_conversation(any_start_server, launch):
    daphne_server = any_start_server
    page = launch()
    stops = count_stops(page)
    start(page, daphne_server.url)
    items = transcript_items(page)
    expect(items.first).to_have_text(f"Avatar: {OPENING}")
    # Over WebRTC from the emulated room: the avatar's video shows and its voice plays.
    expect(page.locator("#video video")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#video video').videoWidth > 0")
    page.wait_for_function(
        "() => [...document.querySelectorAll('audio')].some((a) => !a.paused && a.srcObject"
        " && a.srcObject.getAudioTracks().some((t) => t.readyState === 'live'))"
    )
    # The quality livekit-client reports from the room's ConnectionQualityUpdate.
    expect(page.locator("#quality")).to_have_text("Connection: excellent")
    wait_avatar_quiet(page)
    # A still face is sent only now and then: the video keeps playing and presents it again.
    page.wait_for_function(
        "() => new Promise((done) => { const video = document.querySelector('#video video');"
        " video.requestVideoFrameCallback(() => done(!video.paused)); })"
    )

    page.get_by_label("Message").fill("What are your hours?")
    page.get_by_role("button", name="Send").click()
    expect(items.nth(1)).to_have_text("You (typed): What are your hours?")
    expect(items.nth(2)).to_have_text("Avatar: We are open from nine to five, Monday to Friday.")
    wait_avatar_quiet(page)

    page.evaluate("window.avatarApp.simulateUserSays('Hello there')")
    expect(items.nth(3)).to_have_text("You: Hello there")
    expect(items.nth(4)).to_have_text("Avatar: Hello! How can I help you today?")
    wait_avatar_quiet(page)
    if os.environ.get("README_SCREENSHOT"):
        page.screenshot(path=str(SCREENSHOT))

    page.get_by_label("Say exactly").check()
    page.get_by_label("Message").fill(LONG_SENTENCE)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#avatar-speaking")).to_be_visible()
    # The reply shows as it is spoken, not whole before it is said.
    expect(items.nth(5)).to_contain_text("Avatar:")
    assert LONG_SENTENCE not in items.nth(5).inner_text()
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
    expect(page.locator("#video")).to_have_text("The conversation has ended. You ended the conversation.")
    expect(page.get_by_role("region", name="Talk to the avatar")).to_be_hidden()
    assert seen_states(page) == ["idle", "connecting", "live", "ending", "ended"]
    wait_forwarded(page)
    transcript_caught_up_sync(sid)

    session = AvatarSession.objects.get(id=sid)
    assert session.status == SessionStatus.ENDED
    assert session.end_reason == "USER_CLOSED"
    seqs = stored_seqs(sid)
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > last_seq
    types = list(SessionEvent.objects.filter(session_id=sid).values_list("event_type", flat=True))
    for expected in [
        "client.token_received",
        "client.start_requested",
        "client.started",
        "client.connected",
        "client.participants_ready",
        "client.media_ready",
        "client.mic",
        "avatar.speak_response",
        "emulator.user_says",
        "user.transcription",
        "avatar.interrupt",
        "avatar.start_listening",
        "avatar.stop_listening",
        "client.stop_requested",
        "client.stopped",
    ]:
        assert expected in types, expected
    assert types.index("client.started") < types.index("client.connected") < types.index("client.stopped")
    entries = [(e.speaker, e.text, e.interrupted) for e in TranscriptEntry.objects.filter(session_id=sid)]
    assert entries[:5] == [
        ("avatar", OPENING, False),
        ("user", "What are your hours?", False),  # typed
        ("avatar", "We are open from nine to five, Monday to Friday.", False),
        ("user", "Hello there", False),
        ("avatar", "Hello! How can I help you today?", False),
    ]
    # The interrupted line is stored as far as it was spoken, with what was meant beside it.
    cut = TranscriptEntry.objects.get(session_id=sid, position=6)
    assert (cut.speaker, cut.interrupted, cut.intended_text) == ("avatar", True, LONG_SENTENCE)
    assert cut.text and LONG_SENTENCE.startswith(cut.text) and cut.text != LONG_SENTENCE
    assert len(entries) == 6
    assert len(stops) == 1

    # A fresh token without reloading: the new conversation starts at once.
    page.get_by_role("button", name="Start a new conversation").click()
    expect(page.get_by_role("status")).to_have_text("Live")
    assert session_id(page) != sid
    expect(transcript_items(page)).to_have_count(1)
    expect(transcript_items(page).first).to_have_text(f"Avatar: {OPENING}")


def test_it_loses_no_event_when_the_websocket_is_cut(daphne_server, launch):
    page = launch()
    cut = {"drop_acks": False, "sockets": []}

    def proxy(ws):
        # Between page and server: while drop_acks is set, the server stores events but its acks
        # never reach the page, which must then send them again on the next socket.
        server = ws.connect_to_server()
        cut["sockets"].append(ws)
        ws.on_message(server.send)
        server.on_message(lambda message: None if cut["drop_acks"] else ws.send(message))

    page.route_web_socket(re.compile(r"/ws/sessions/"), proxy)
    start(page, daphne_server.url)
    items = transcript_items(page)
    expect(items.first).to_have_text(f"Avatar: {OPENING}")

    cut["drop_acks"] = True
    page.evaluate("window.avatarApp.simulateUserSays('Hello there')")
    expect(items.nth(1)).to_have_text("You: Hello there")
    assert page.evaluate("window.avatarApp.conversation.forwarder.queue.size") > 0
    cut["sockets"][-1].close(code=1011, reason="network down")
    cut["drop_acks"] = False
    expect(items.nth(2)).to_have_text("Avatar: Hello! How can I help you today?")
    wait_forwarded(page)
    assert len(cut["sockets"]) >= 2

    page.evaluate("window.avatarApp.dropForwarderSocket()")  # and once more from the page's side
    page.get_by_label("Message").fill("What are your hours?")
    page.get_by_role("button", name="Send").click()
    wait_avatar_quiet(page)
    expect(items.nth(4)).to_have_text("Avatar: We are open from nine to five, Monday to Friday.")
    sid = end_with_every_event_stored(page)
    assert AvatarSession.objects.get(id=sid).status == SessionStatus.ENDED


def test_it_loses_no_avatar_event_when_the_signal_socket_drops(make_daphne_server, launch):
    # Only the room's signal socket goes through the proxy; WebRTC media and data go over UDP.
    port = free_port()
    proxy = PausableProxy("127.0.0.1", port)
    # At half the usual test speed the idle stop is 30 s away, not 15: the outage and the long
    # sentence pass no visitor activity to the room, and on a loaded machine they took longer.
    env = {"EMULATOR_SPEED": "10", "EMULATOR_LIVEKIT_URL": f"ws://127.0.0.1:{proxy.port}/liveavatar-emulator"}
    server = make_daphne_server(port=port, env=env)
    page = launch()
    start(page, server.url)
    items = transcript_items(page)
    expect(items.first).to_have_text(f"Avatar: {OPENING}")
    wait_avatar_quiet(page)

    page.get_by_label("Say exactly").check()
    page.get_by_label("Message").fill(LONG_SENTENCE)
    page.get_by_role("button", name="Send").click()
    expect(items.nth(1)).to_contain_text("Avatar: This is")
    proxy.outage()  # the signal socket drops mid-sentence, and the room cannot be reached for a while
    expect(page.locator("#quality")).to_have_text("Connection: reconnecting")
    proxy.restore()
    expect(page.locator("#quality")).to_have_text("Connection: excellent")
    # Every word the avatar said meanwhile reaches the page, once.
    expect(items.nth(1)).to_have_text(f"Avatar: {LONG_SENTENCE}")
    wait_avatar_quiet(page)

    page.get_by_label("Say exactly").uncheck()
    page.get_by_label("Message").fill("What are your hours?")
    page.get_by_role("button", name="Send").click()
    expect(items.nth(3)).to_have_text("Avatar: We are open from nine to five, Monday to Friday.")
    wait_avatar_quiet(page)
    sid = end_with_every_event_stored(page)
    said = SessionEvent.objects.get(session_id=sid, event_type="avatar.speak_text").event_id
    stored = list(SessionEvent.objects.filter(session_id=sid, source="server", payload__source_event_id=said))
    assert [e.event_type for e in stored] == ["avatar.transcription", "avatar.speak_started"] + [
        "avatar.transcription.chunk"
    ] * len(LONG_SENTENCE.split()) + ["avatar.speak_ended"]
    assert "".join(e.payload["text"] for e in stored[2:-1]) == LONG_SENTENCE
    assert len({e.event_id for e in stored}) == len(stored)


def test_it_ends_the_session_when_the_page_is_reloaded(daphne_server, launch):
    page = launch()
    start(page, daphne_server.url)
    expect(transcript_items(page).first).to_contain_text("Avatar:")
    first = session_id(page)
    page.evaluate(
        "window.avatarApp.simulateUserSays('Hello there, I would like to know a lot about your opening "
        "hours and about everything else that you can tell me today')"
    )
    expect(transcript_items(page).nth(1)).to_contain_text("You:")
    page.reload()  # while the visitor speaks, events still arriving

    expect(page.get_by_role("status")).to_have_text("Ready to start")
    expect(page.get_by_role("alert").filter(has_text="ended when the page was reloaded")).to_be_visible()
    earlier = page.get_by_role("region", name="Before the page was reloaded").get_by_role("listitem")
    expect(earlier.first).to_contain_text("Avatar: Hello!")  # as far as it was said before the reload
    expect(earlier.nth(1)).to_contain_text("You: Hello there")
    expect(transcript_items(page)).to_have_count(0)
    expect(page.get_by_role("button", name="Start a new conversation")).to_be_visible()
    assert session_id(page) != first
    # The new page sends what the old one could not get acknowledged, then forgets it.
    page.wait_for_function("id => !Object.keys(sessionStorage).some(k => k.endsWith(id))", arg=first)
    session = AvatarSession.objects.get(id=first)
    assert session.status == SessionStatus.ENDED
    # The keepalive stop left with the closing page (Playwright does not see requests of a page
    # being unloaded, so the emulator is asked).
    remote = EmulatedSession.objects.get(id=session.liveavatar_session_id)
    assert (remote.status, remote.end_reason) == (EmulatedSession.ENDED, "USER_CLOSED")
    events = list(SessionEvent.objects.filter(session_id=first).order_by("seq").values_list("seq", "event_type"))
    assert [seq for seq, _ in events] == list(range(1, len(events) + 1))
    assert events[-1][1] == "client.unload"
    assert "emulator.user_says" in [kind for _, kind in events]


def test_on_a_phone_the_latest_lines_stay_in_view_and_the_message_limit_shows(daphne_server, launch_browser):
    page = launch_browser(*MIC_ALLOWED).new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    start(page, daphne_server.url)
    items = transcript_items(page)
    for n, question in enumerate(["What are your hours?", "Where are you?", "Do you deliver?"]):
        page.get_by_label("Message").fill(question)
        page.get_by_role("button", name="Send").click()
        expect(items.nth(2 * n + 2)).to_contain_text("Avatar:")
        wait_avatar_quiet(page)
    latest = items.last.bounding_box()
    assert latest["y"] >= 0 and latest["y"] + latest["height"] <= 844, latest

    message = page.get_by_label("Message")
    expect(page.locator("#message-count")).to_have_text("Up to 1,000 characters.")
    message.fill("Hello")
    expect(page.locator("#message-count")).to_have_text("5 of 1,000 characters")
    message.fill("x" * 1200)
    expect(message).to_have_value("x" * 1000)
    expect(page.locator("#message-count")).to_have_text("1,000 of 1,000 characters: that is the limit.")


def default_profile(**fields):
    """The page at / serves the default profile: what it sends LiveAvatar is set there."""
    AvatarProfile.objects.default()
    AvatarProfile.objects.filter(slug="default").update(**fields)


def test_it_shows_the_server_ending_the_session(make_daphne_server, launch):
    default_profile(max_session_duration=60)  # 3 s at speed 20
    server = make_daphne_server()
    page = launch()
    stops = count_stops(page)
    start(page, server.url)
    expect(page.locator("#countdown")).to_have_text(re.compile(r"^0:0[0-3] left$"))  # the 3 s it really lasts
    sid = session_id(page)
    expect(page.get_by_role("status")).to_have_text("Ended. The conversation reached its time limit.")
    expect(page.get_by_role("button", name="Start a new conversation")).to_be_visible()
    expect(page.get_by_role("region", name="Talk to the avatar")).to_be_hidden()
    wait_forwarded(page)
    assert len(stops) == 1
    session = AvatarSession.objects.get(id=sid)
    assert (session.status, session.end_reason) == (SessionStatus.ENDED, "MAX_DURATION_REACHED")


def test_it_ends_while_still_connecting(daphne_server, launch):
    page = launch()
    stops = count_stops(page)
    page.goto(daphne_server.url)
    record_states(page)
    sid = session_id(page)
    # Both clicks in one task: End is pressed before the start call has answered.
    page.evaluate("document.getElementById('start').click(); document.getElementById('end').click()")
    expect(page.get_by_role("status")).to_have_text("Ended. You ended the conversation.")
    assert seen_states(page) == ["idle", "connecting", "ending", "ended"]
    wait_forwarded(page)
    assert len(stops) == 1
    assert AvatarSession.objects.get(id=sid).status == SessionStatus.ENDED


def test_it_carries_on_by_text_when_the_microphone_is_denied(daphne_server, launch):
    page = launch(MIC_DENIED)
    start(page, daphne_server.url)
    expect(page.get_by_role("alert").filter(has_text="microphone is blocked")).to_be_visible()
    expect(page.get_by_role("button", name="Mute")).to_be_disabled()
    page.get_by_label("Message").fill("What are your hours?")
    page.get_by_role("button", name="Send").click()
    expect(transcript_items(page).last).to_have_text("Avatar: We are open from nine to five, Monday to Friday.")
    sid = session_id(page)
    wait_forwarded(page)
    mic = SessionEvent.objects.get(session_id=sid, event_type="client.mic")
    assert mic.payload["state"] == "denied"


def test_it_talks_with_push_to_talk(make_daphne_server, launch):
    default_profile(interactivity="PUSH_TO_TALK")
    server = make_daphne_server()
    page = launch()
    start(page, server.url)
    expect(page.get_by_role("button", name="Mute")).to_be_hidden()
    items = transcript_items(page)
    expect(items.first).to_have_text(f"Avatar: {OPENING}")
    wait_avatar_quiet(page)

    talk = page.get_by_role("button", name="Hold to talk")
    talk.hover()
    page.mouse.down()
    expect(page.get_by_role("button", name="Talking… release to send")).to_be_visible()
    page.evaluate("window.avatarApp.simulateUserSays('Hello there')")
    expect(items.nth(1)).to_have_text("You: Hello there")
    page.mouse.up()
    expect(items.nth(2)).to_have_text("Avatar: Hello! How can I help you today?")
    wait_avatar_quiet(page)

    page.locator("body").focus()
    page.keyboard.down("Space")
    expect(page.get_by_role("button", name="Talking… release to send")).to_be_visible()
    page.evaluate("window.avatarApp.simulateUserSays('What are your hours?')")
    expect(items.nth(3)).to_have_text("You: What are your hours?")
    page.keyboard.up("Space")
    expect(items.nth(4)).to_have_text("Avatar: We are open from nine to five, Monday to Friday.")


def test_it_asks_for_a_tap_when_sound_is_blocked(daphne_server, launch):
    # Chromium lets a page that captures the microphone play sound, so this visitor has none.
    page = launch(MIC_DENIED)
    # No click and no look into the page until sound is blocked: every Playwright evaluation
    # counts as a user gesture (Runtime.callFunctionOn userGesture), which would unblock it.
    # The page's own report of it, on the forwarding websocket, is watched instead.
    with page.expect_websocket(lambda ws: "/ws/sessions/" in ws.url) as socket_info:
        page.goto(f"{daphne_server.url}/?auto_start=1")
    socket_info.value.wait_for_event("framesent", lambda payload: "client.audio_blocked" in payload)
    page.get_by_role("button", name="Tap to enable sound").click()
    expect(page.get_by_role("button", name="Tap to enable sound")).to_be_hidden()
    expect(page.get_by_role("status")).to_have_text("Live")
    sid = session_id(page)
    wait_forwarded(page)
    types = set(SessionEvent.objects.filter(session_id=sid).values_list("event_type", flat=True))
    assert {"client.audio_blocked", "client.audio_unblocked"} <= types


def test_it_keeps_the_page_javascript_under_200_kb(daphne_server, launch):
    page = launch()
    scripts = {}
    page.on("response", lambda r: scripts.setdefault(r.url.rsplit("/", 1)[-1], r) if r.url.endswith(".js") else None)
    start(page, daphne_server.url)
    expect(transcript_items(page).first).to_contain_text("Avatar:")
    # Compressed as WhiteNoise serves them (gzip level 9; brotli would be smaller still). The page
    # loads the same scripts against the real service: livekit-client's Room in both modes.
    sizes = {name: len(gzip.compress(response.body(), 9)) for name, response in scripts.items()}
    assert "livekit-client.min.js" in sizes
    total = sum(sizes.values())
    print(f"page JS gzipped: {total / 1000:.1f} KB")
    assert total <= 200_000
