"""What staff and visitors are shown about the record, in Chromium against a live Daphne: a staff member
ending a conversation from the admin (and the visitor told so), the session list at 1280 px, and
the event timeline."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import expect

from sessions_app.models import AvatarSession, SessionEvent, SessionStatus
from tests.conftest import BROWSER_TIMEOUT_MS, FAKE_MIC, GRANT_MIC

pytestmark = pytest.mark.e2e

CHANGELIST = "/admin/sessions_app/avatarsession/"


@pytest.fixture
def browser(launch_browser):
    return launch_browser(FAKE_MIC, GRANT_MIC)


def staff_page(browser, server, username="alex"):
    User.objects.create_user(username, password="pass-word-42", is_staff=True, is_superuser=True)
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    page.goto(f"{server.url}/admin/login/?next={CHANGELIST}")
    page.fill("#id_username", username)
    page.fill("#id_password", "pass-word-42")
    page.click("input[type=submit]")
    expect(page.locator("#result_list, .paginator").first).to_be_visible()
    return page


def live_visitor(browser, server):
    page = browser.new_context(viewport={"width": 1200, "height": 760}).new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    page.goto(server.url)
    page.get_by_role("button", name="Start conversation").click()
    expect(page.get_by_role("status")).to_have_text("Live")
    expect(page.locator("#transcript li").first).to_be_visible()
    expect(page.locator("#avatar-speaking")).to_be_hidden()
    return page


def test_a_staff_member_ending_a_conversation_is_who_the_visitor_is_told_ended_it(daphne_server, browser):
    visitor = live_visitor(browser, daphne_server)
    session_id = visitor.evaluate("window.avatarApp.conversation.config.session_id")
    staff = staff_page(browser, daphne_server)
    staff.goto(f"{daphne_server.url}{CHANGELIST}")
    staff.locator(f"input[name=_selected_action][value='{session_id}']").check()
    staff.select_option("select[name=action]", "end_live_session")
    staff.get_by_role("button", name="Run").click()
    expect(staff.locator(".messagelist")).to_contain_text("Ended 1 live session(s).")

    expect(visitor.get_by_role("status")).to_have_text("Ended. A member of staff ended the conversation.")
    expect(visitor.get_by_text("You ended the conversation")).to_have_count(0)
    visitor.wait_for_function("() => window.avatarApp.conversation.forwarder.queue.size === 0")
    session = AvatarSession.objects.get(pk=session_id)
    assert (session.status, session.end_reason, session.ended_by) == (SessionStatus.ENDED, "STAFF_ENDED", "staff:alex")
    expect(staff.locator(f"#result_list tr:has(a[href*='{session_id}']) td.field-ended")).to_have_text(
        re.compile(r"Staff ended it\s*staff:alex")
    )


def test_the_session_list_fits_at_1280_and_leaves_visits_never_started_out(daphne_server, browser):
    now = timezone.now()
    talked = AvatarSession.objects.create(
        status=SessionStatus.ENDED,
        avatar_id="dd73ea75-1218-4ef3-92ce-606d5f7fbc0a",
        started_at=now - timedelta(minutes=3),
        ended_at=now,
        end_reason="MAX_DURATION_REACHED",
        turn_count=12,
        median_latency_ms=1234,
    )
    visit = AvatarSession.objects.create(avatar_id="dd73ea75-1218-4ef3-92ce-606d5f7fbc0a")
    staff = staff_page(browser, daphne_server)
    rows = staff.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(str(talked.id)[:8])
    # Every column is on screen: the table is no wider than its box.
    widths = staff.evaluate(
        "() => { const t = document.getElementById('result_list'); return [t.scrollWidth, t.parentElement.clientWidth,"
        " document.documentElement.scrollWidth] }"
    )
    assert widths[0] <= widths[1] and widths[2] <= 1280, widths
    expect(staff.locator("#result_list thead")).to_contain_text("Median latency (milliseconds)")
    # The avatar filter names the avatar LiveAvatar knows.
    expect(staff.locator("#changelist-filter")).to_contain_text("Wayne")
    expect(staff.locator("#changelist-filter")).not_to_contain_text("dd73ea75")
    staff.locator("#changelist-filter").get_by_role("link", name="Never started").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(str(visit.id)[:8])


def test_the_event_timeline_shows_json_to_the_millisecond_and_folds_a_turns_chunks(daphne_server, browser):
    session = AvatarSession.objects.create(status=SessionStatus.ENDED, started_at=timezone.now())
    received = timezone.now().replace(microsecond=123456)
    words = ["We ", "are ", "open."]
    events = [("client", {"event_type": "client.started", "max_session_duration": None})]
    events += [("server", {"event_type": "avatar.transcription.chunk", "text": w}) for w in words]
    events += [("server", {"event_type": "avatar.speak_ended"})]
    for seq, (source, payload) in enumerate(events, start=1):
        SessionEvent.objects.create(
            session=session,
            seq=seq,
            event_type=payload["event_type"],
            source=source,
            payload=payload,
            client_ts=received - timedelta(days=400) if seq == 1 else received,
            received_at=received,
            clock_skewed=seq == 1,
        )
    staff = staff_page(browser, daphne_server)
    staff.goto(f"{daphne_server.url}{CHANGELIST}{session.id}/change/")
    rows = staff.locator(".event-timeline > tbody > tr")
    expect(rows).to_have_count(3)  # started, the three chunks in one, speak_ended
    stamp = f"{timezone.localtime(received):%Y-%m-%d %H:%M:%S}.123"
    expect(rows.nth(0)).to_contain_text('{"event_type": "client.started", "max_session_duration": null}')
    expect(rows.nth(0)).to_contain_text("clock off")
    expect(rows.nth(0).locator("td").nth(2)).to_have_text(stamp)
    chunks = rows.nth(1)
    expect(chunks).to_contain_text("2–4")
    expect(chunks).to_contain_text("avatar.transcription.chunk × 3")
    details = chunks.locator("details")
    expect(details.locator("summary")).to_have_text("“We are open.”")
    expect(details.locator("table")).to_be_hidden()
    details.locator("summary").click()
    expect(details.locator("tr")).to_have_count(3)
    expect(details.locator("tr").nth(1)).to_contain_text('"text": "are "')
    expect(rows.nth(2)).not_to_contain_text("clock off")


def test_the_dashboards_recent_sessions_follow_a_conversation_as_its_card_does(daphne_server, browser):
    staff = staff_page(browser, daphne_server)
    staff.goto(f"{daphne_server.url}/dashboard/")
    expect(staff.locator("#feed-status")).to_have_text("live")
    visitor = live_visitor(browser, daphne_server)
    session_id = visitor.evaluate("window.avatarApp.conversation.config.session_id")
    row = staff.locator(f'#recent tr[data-session="{session_id}"]')
    expect(row).to_be_visible()
    visitor.get_by_label("Message").fill("What are your hours?")
    visitor.get_by_role("button", name="Send").click()
    card = staff.locator(f"#session-{session_id} .meta")
    expect(card).to_contain_text("3 utterances")
    expect(row.locator("td").nth(3)).to_have_text("3")  # utterances, without a reload
    # The figures follow the live conversation too (within the dashboard's ten seconds).
    expect(staff.locator("#period-today dd").nth(2)).to_have_text(re.compile(r"^\d+ ms$"), timeout=20_000)
