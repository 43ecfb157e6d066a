"""Live control in real browsers against a real Daphne: a staff member types on the dashboard's live
card and the visitor's avatar says it, marked as said on staff's behalf; the page being gone is said
plainly."""

import os
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from playwright.sync_api import expect

from control.models import ControlCommand, Outcome
from sessions_app.models import TranscriptEntry
from tests.conftest import FAKE_MIC, GRANT_MIC

pytestmark = pytest.mark.e2e

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "dashboard-control.png"
VISITOR_SCREENSHOT = Path("/tmp/visitor-operator-line.png")  # looked at, not kept


@pytest.fixture
def browser(launch_browser):
    return launch_browser(FAKE_MIC, GRANT_MIC)


def controller(username="alice"):
    user = User.objects.create_user(username, password="pass-word-42", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="control_session"))
    return user


def dashboard(browser, server, username):
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{server.url}/admin/login/?next=/dashboard/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pass-word-42")
    page.click("input[type=submit]")
    expect(page.locator("#feed-status")).to_have_text("live")
    return page


def live_visitor(browser, server):
    visitor = browser.new_context().new_page()
    visitor.goto(server.url)
    visitor.get_by_role("button", name="Start conversation").click()
    expect(visitor.get_by_role("status")).to_have_text("Live")
    expect(visitor.locator("#transcript li").first).to_have_text(re.compile("^Avatar: Hello!"))
    return visitor, visitor.evaluate("window.avatarApp.conversation.config.session_id")


def test_staff_type_on_the_dashboard_and_the_visitors_avatar_says_it(daphne_server, browser):
    controller()
    staff = dashboard(browser, daphne_server, "alice")
    errors = []
    staff.on("pageerror", lambda error: errors.append(str(error)))
    visitor, session_id = live_visitor(browser, daphne_server)

    card = staff.locator(f"#session-{session_id}")
    card.get_by_label("Step in").fill("say this")
    card.get_by_role("button", name="Say this").click()
    expect(card.get_by_role("status")).to_have_text("Sent: the avatar is saying it.")

    line = visitor.locator("#transcript li").last
    expect(line).to_have_text("Avatar (on behalf of our staff): say this")
    expect(card.locator(".transcript li").last).to_have_text("Avatar (on behalf of staff member alice): say this")
    if os.environ.get("README_SCREENSHOT"):  # as tests/e2e/test_visitor_page.py: plain runs leave the tree clean
        card.screenshot(path=SCREENSHOT)
        visitor.screenshot(path=VISITOR_SCREENSHOT)

    command = ControlCommand.objects.get()
    assert (command.origin, command.outcome, command.command) == ("staff:alice", Outcome.DELIVERED, "speak_text")
    # The dashboard's line comes from the stored transcript, so it is stored by now, with its origin.
    stored = TranscriptEntry.objects.get(session_id=session_id, text="say this")
    assert (stored.speaker, stored.sent_by) == ("avatar", "staff:alice")
    assert errors == []

    # Ending from the dashboard ends the visitor's conversation and says who ended it.
    staff.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name="End conversation").click()
    expect(visitor.get_by_role("status")).to_have_text("Ended. A member of staff ended the conversation.")
    expect(card.locator(".status")).to_have_text("ended (STAFF_ENDED)")
    end = ControlCommand.objects.get(command="end")
    assert (end.origin, end.outcome) == ("staff:alice", Outcome.DELIVERED)


def test_a_closed_page_is_said_plainly_and_staff_without_the_permission_see_no_controls(daphne_server, browser):
    controller()
    User.objects.create_user("bob", password="pass-word-42", is_staff=True)
    staff = dashboard(browser, daphne_server, "alice")
    visitor, session_id = live_visitor(browser, daphne_server)
    watcher = dashboard(browser, daphne_server, "bob")
    expect(watcher.locator(f"#session-{session_id} .transcript li").first).to_be_visible()
    expect(watcher.locator(f"#session-{session_id} .control")).to_have_count(0)

    visitor.context.set_offline(True)  # the visitor's network is gone: no socket, no events
    card = staff.locator(f"#session-{session_id}")
    card.get_by_label("Step in").fill("are you there?")
    card.get_by_role("button", name="Say this").click()
    expect(card.get_by_role("status")).to_have_text(
        re.compile(
            r"^(The visitor's page is not connected: it was closed or lost its connection\."
            r"|The visitor's page did not confirm within 5 seconds; it may have been closed or lost its connection\.)$"
        )
    )
    assert ControlCommand.objects.filter(session_id=session_id, outcome=Outcome.DELIVERED).count() == 0
