"""The visitor speaks into the microphone (Chromium's fake capture playing a WAV that eSpeak NG
made, over and over) and the emulated avatar hears them: the utterance is stored with the moments
it started and ended and the words recognised, then answered. Push-to-talk gates what is heard."""

import re

import pytest
from playwright.sync_api import expect

from profiles.models import AvatarProfile
from sessions_app.emulator import agent
from sessions_app.models import SessionEvent, TranscriptEntry
from tests.conftest import BROWSER_TIMEOUT_MS, FAKE_MIC, GRANT_MIC
from tests.speech import PHRASE, speech_wav
from tests.waiting import transcript_caught_up_sync, wait_for

pytestmark = pytest.mark.e2e

ANSWER = agent.reply(PHRASE)
HEARD = re.compile(r"^You: .*\bopen\b")  # what PocketSphinx makes of PHRASE, as the transcript shows it


@pytest.fixture
def speaking_visitor(launch_browser, tmp_path):
    """A page whose microphone says PHRASE, then is silent, again and again; and the loop's length."""
    wav = tmp_path / "visitor.wav"
    before, after = 0.5, 2.5
    length = speech_wav(wav, before=before, after=after)
    page = launch_browser(FAKE_MIC, GRANT_MIC, f"--use-file-for-fake-audio-capture={wav}").new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    return page, length, before + length + after


def start(page, url):
    page.goto(url)
    page.get_by_role("button", name="Start conversation").click()
    expect(page.get_by_role("status")).to_have_text("Live")
    # Every agent event the page receives, in order (installed before anything can be heard).
    page.evaluate("""() => {
        window.heard = [];
        window.avatarApp.conversation.room.on('dataReceived', (payload, participant, kind, topic) => {
            if (topic === 'agent-response') window.heard.push(JSON.parse(new TextDecoder().decode(payload)).event_type);
        });
        window.microphoneTrack = () =>
            [...window.avatarApp.conversation.room.localParticipant.audioTrackPublications.values()][0].track;
    }""")


def transcript_items(page):
    return page.get_by_role("region", name="Transcript").get_by_role("listitem")


def heard(page) -> list[str]:
    return page.evaluate("window.heard")


def end(page):
    sid = page.evaluate("window.avatarApp.conversation.config.session_id")
    page.get_by_role("button", name="End conversation").click()
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^Ended"))
    page.wait_for_function("() => window.avatarApp.conversation.forwarder.queue.size === 0")
    transcript_caught_up_sync(sid)
    return sid


def test_what_the_visitor_says_is_heard_stored_and_answered(daphne_server, speaking_visitor):
    page, length, _ = speaking_visitor
    start(page, daphne_server.url)
    items = transcript_items(page)
    # The second time round, the phrase is surely heard whole (the first may have begun before the
    # microphone reached the room).
    expect(items.filter(has_text=HEARD).nth(1)).to_be_visible(timeout=30_000)
    expect(items.filter(has_text=f"Avatar: {ANSWER}").nth(1)).to_be_visible()
    sid = end(page)

    entries = list(TranscriptEntry.objects.filter(session_id=sid))
    spoken = [e for e in entries if e.speaker == "user"][1]
    assert "open" in spoken.text.split(), spoken.text
    # Started when the speech started, ended when it ended: told within 300 ms of its start and
    # half a second of its end (plus the time the events took to reach the page).
    assert spoken.started_at and spoken.ended_at
    duration = (spoken.ended_at - spoken.started_at).total_seconds()
    assert length - 0.4 < duration < length + 0.8, (duration, length)
    reply = entries[entries.index(spoken) + 1]
    assert (reply.speaker, reply.text) == ("avatar", ANSWER)
    assert reply.started_at > spoken.ended_at
    types = list(SessionEvent.objects.filter(session_id=sid).order_by("seq").values_list("event_type", flat=True))
    assert types.index("user.speak_started") < types.index("user.speak_ended") < types.index("user.transcription")


def captured(page) -> dict:
    """What the page's microphone has captured and sent so far (its WebRTC statistics)."""
    return page.evaluate("""async () => {
        const report = await microphoneTrack().getRTCStatsReport();
        const stats = {seconds: 0, packets: 0};
        report.forEach((s) => {
            if (s.type === 'media-source') stats.seconds = s.totalSamplesDuration;
            if (s.type === 'outbound-rtp') stats.packets = s.packetsSent;
        });
        return stats;
    }""")


def test_with_push_to_talk_only_what_is_said_while_the_button_is_held_is_heard(make_daphne_server, speaking_visitor):
    AvatarProfile.objects.default()
    AvatarProfile.objects.filter(slug="default").update(interactivity="PUSH_TO_TALK")
    server = make_daphne_server()
    page, length, loop = speaking_visitor
    start(page, server.url)
    items = transcript_items(page)
    expect(items.first).to_contain_text("Avatar:")

    # The microphone open without the button held: the room receives the speech but must not hear it.
    page.wait_for_function("() => window.avatarApp.conversation.mic?.state === 'muted'")
    page.evaluate("window.avatarApp.conversation.setMuted(false)")
    page.wait_for_function("() => window.avatarApp.conversation.mic.state === 'on'")
    first = captured(page)
    sent = wait_for(
        lambda: (now := captured(page))["seconds"] >= first["seconds"] + 2 * loop and now,
        timeout=4 * loop,
        what="two loops of the speech captured",
    )
    assert sent["packets"] - first["packets"] >= 2 * length * 40  # the speech went out (silence sends few packets)
    assert "user.speak_started" not in heard(page)

    # Held: heard from the start of speech to its end, written down and answered on release.
    talk = page.get_by_role("button", name="Hold to talk")
    talk.hover()
    page.mouse.down()
    expect(page.get_by_role("button", name="Talking… release to send")).to_be_visible()
    # Held until the phrase has ended twice: once at least it was heard whole.
    page.wait_for_function(
        "() => window.heard.filter((type) => type === 'user.speak_ended').length >= 2", timeout=3 * loop * 1000
    )
    page.mouse.up()
    expect(items.filter(has_text=HEARD).first).to_be_visible()
    expect(items.filter(has_text=f"Avatar: {ANSWER}").first).to_be_visible()
    sid = end(page)

    types = list(SessionEvent.objects.filter(session_id=sid).order_by("seq").values_list("event_type", flat=True))
    pressed = types.index("user.start_push_to_talk")
    assert "user.speak_started" not in types[:pressed]
    assert types.index("user.speak_started", pressed) < types.index("user.transcription", pressed)
    said = [e.text for e in TranscriptEntry.objects.filter(session_id=sid, speaker="user")]
    assert any("open" in text.split() for text in said), said
