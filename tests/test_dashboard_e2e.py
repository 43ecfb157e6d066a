"""The dashboard in a real browser against a real Daphne: staff watch a visitor's conversation appear live
while it happens in a second browser context; others are refused."""

import contextlib
import json
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect
from websockets.sync.client import connect

from sessions_app import credentials
from sessions_app.models import AvatarSession, SessionStatus
from tests.conftest import FAKE_MIC, GRANT_MIC

pytestmark = pytest.mark.e2e

OPENING = "Hello! I am the emulated avatar. What would you like to talk about?"
HOURS = "We are open from nine to five, Monday to Friday."
GREETING = "Hello! How can I help you today?"


@pytest.fixture
def browser(launch_browser):
    # A fake microphone that is granted, as most visitors have.
    return launch_browser(FAKE_MIC, GRANT_MIC)


def log_in(page, server, username):
    page.goto(f"{server.url}/admin/login/?next=/dashboard/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pass-word-42")
    page.click("input[type=submit]")


def test_staff_see_a_visitors_conversation_appear_live(daphne_server, browser):
    User.objects.create_user("staff", password="pass-word-42", is_staff=True)
    staff = browser.new_context().new_page()
    errors = []
    staff.on("pageerror", lambda error: errors.append(str(error)))
    log_in(staff, daphne_server, "staff")
    expect(staff.locator("#feed-status")).to_have_text("live")
    today_sessions = staff.locator("#period-today dd").first
    expect(today_sessions).to_have_text("0")
    expect(staff.locator("#recent tr")).to_have_count(0)

    # A visitor in a context of their own (no staff cookie) talks to the avatar on the real page.
    visitor = browser.new_context().new_page()
    visitor.goto(daphne_server.url)
    visitor.get_by_role("button", name="Start conversation").click()
    expect(visitor.get_by_role("status")).to_have_text("Live")
    session_id = visitor.evaluate("window.avatarApp.conversation.config.session_id")
    card = staff.locator(f"#session-{session_id}")
    lines = card.locator(".transcript li")
    expect(lines.first).to_have_text(f"Avatar: {OPENING}")
    expect(lines.first).to_have_class("avatar")
    expect(card.locator(".status")).to_have_text("active")
    expect(visitor.locator("#avatar-speaking")).to_be_hidden()
    # The figures and the recent sessions follow without a reload.
    expect(today_sessions).to_have_text("1")
    expect(staff.locator("#recent tr")).to_have_count(1)
    expect(staff.locator("#recent tr td").nth(1)).to_have_text("active")

    visitor.get_by_label("Message").fill("What are your hours?")
    visitor.get_by_role("button", name="Send").click()
    expect(visitor.locator("#transcript li").last).to_have_text(f"Avatar: {HOURS}")
    expect(lines.nth(1)).to_have_text("Visitor: What are your hours?")  # typed
    expect(lines.nth(2)).to_have_text(f"Avatar: {HOURS}")
    expect(visitor.locator("#avatar-speaking")).to_be_hidden()

    visitor.evaluate("window.avatarApp.simulateUserSays('Hello there')")  # the visitor speaks
    expect(lines.nth(3)).to_have_text("Visitor: Hello there")
    expect(lines.nth(3)).to_have_class("user")
    expect(lines.nth(4)).to_have_text(f"Avatar: {GREETING}")

    visitor.get_by_role("button", name="End conversation").click()
    expect(visitor.get_by_role("status")).to_have_text(re.compile("^Ended"))
    expect(card.locator(".status")).to_have_text("ended (USER_CLOSED)")
    expect(card).to_have_class(re.compile(r"\bover\b"))
    expect(lines).to_have_count(5)
    expect(staff.locator("#recent tr td").nth(1)).to_have_text("ended")
    expect(staff.locator("#recent tr td").nth(3)).to_have_text("5")
    assert errors == []


def test_the_dashboard_reads_cleanly_and_the_admin_links_to_it(daphne_server, browser):
    User.objects.create_superuser("staff", password="pass-word-42")  # the admin's list needs view permission
    staff = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    log_in(staff, daphne_server, "staff")
    expect(staff.locator("#feed-status")).to_have_text("live")
    status, link = (
        staff.locator("#feed-status").bounding_box(),
        staff.get_by_role("link", name="All sessions").bounding_box(),
    )
    assert abs(status["y"] - link["y"]) < 4, (status, link)  # one line, no separator left dangling
    chart, main = staff.locator("#chart-days svg").bounding_box(), staff.locator("main").bounding_box()
    assert chart["width"] > 0.9 * (main["width"] - 32)
    live_card_area = staff.locator("#live-empty").bounding_box()
    figures = staff.get_by_role("heading", name="Figures").bounding_box()
    assert figures["y"] - (live_card_area["y"] + live_card_area["height"]) >= 16
    staff.get_by_role("link", name="All sessions").click()
    staff.get_by_role("link", name="Live dashboard").click()
    expect(staff.get_by_role("heading", name="Live dashboard")).to_be_visible()


def test_under_load_each_card_counts_what_its_transcript_shows(daphne_server, browser):
    """Ten conversations forwarded at once: the catch-up builds their transcripts after their events'
    frames went out, and each card's counts follow."""
    User.objects.create_user("staff", password="pass-word-42", is_staff=True)
    sessions = [AvatarSession.objects.create(status=SessionStatus.ACTIVE) for _ in range(10)]
    staff = browser.new_context().new_page()
    log_in(staff, daphne_server, "staff")
    expect(staff.locator("#feed-status")).to_have_text("live")
    conversation = json.loads((Path(__file__).parent / "fixtures" / "conversation.json").read_text())["events"]
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(
                connect(
                    f"{daphne_server.ws_url}/ws/sessions/{s.id}/events/?credential={credentials.mint(s.id)}",
                    origin=daphne_server.url,
                )
            )
            for s in sessions
        ]
        for socket in sockets:  # the greeting and the visitor's question, all at once
            socket.send(json.dumps({"type": "events", "events": conversation[2:19]}))
        for socket in sockets:
            assert json.loads(socket.recv(timeout=5))["type"] == "ack"
    for session in sessions:
        card = staff.locator(f"#session-{session.id}")
        expect(card.locator(".transcript li")).to_have_count(2)
        expect(card.locator(".meta")).to_have_text(re.compile(r"^2 utterances · "))


def test_non_staff_are_refused(daphne_server, browser):
    User.objects.create_user("visitor", password="pass-word-42")
    page = browser.new_context().new_page()
    log_in(page, daphne_server, "visitor")
    # Django's staff login says this account may not enter, and the dashboard is not shown.
    expect(page.locator(".errornote")).to_be_visible()
    assert "/admin/login/" in page.url
    page.goto(f"{daphne_server.url}/dashboard/")
    assert "/admin/login/" in page.url
    expect(page.locator("#live")).to_have_count(0)
