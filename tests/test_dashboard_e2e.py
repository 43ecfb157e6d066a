"""The dashboard in a real browser against a real Daphne: staff watch a transcript appear live; others are refused.

The conversation is forwarded over the ingest websocket by a plain client speaking the page's protocol,
the way the visitor page does it.
"""

import json
import os
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect, sync_playwright
from websockets.sync.client import connect

from sessions_app import credentials
from sessions_app.models import AvatarSession

# Sync Playwright runs an event loop in the main thread; Django's ORM would refuse to run there.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.e2e

CONVERSATION = json.loads((Path(__file__).parent / "fixtures" / "conversation.json").read_text())["events"]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def log_in(page, server, username):
    page.goto(f"{server.url}/admin/login/?next=/dashboard/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pass-word-42")
    page.click("input[type=submit]")


def test_staff_see_a_transcript_appear_live(daphne_server, browser):
    User.objects.create_user("staff", password="pass-word-42", is_staff=True)
    session = AvatarSession.objects.create()
    page = browser.new_context().new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, daphne_server, "staff")
    expect(page.locator("#feed-status")).to_have_text("live")

    url = f"{daphne_server.ws_url}/ws/sessions/{session.id}/events/?credential={credentials.mint(session.id)}"
    with connect(url, origin=daphne_server.url) as forwarder:
        def forward(items):
            forwarder.send(json.dumps({"type": "events", "events": items}))
            assert json.loads(forwarder.recv(timeout=5))["type"] == "ack"

        card = page.locator(f"#session-{session.id}")
        forward(CONVERSATION[:13])  # started, connected, the avatar's opening line
        expect(card.locator("li.avatar").first).to_have_text("Hello! I'm Wayne. How can I help you today?")
        forward(CONVERSATION[13:17])  # the visitor is half-way through a sentence: a partial line
        expect(card.locator("li.user.partial")).to_have_text("What are your hours")
        forward(CONVERSATION[17:26])  # the final replaces it; the avatar answers and is interrupted
        expect(card.locator("li.user").first).to_have_text("What are your hours?")
        expect(card.locator("li.avatar.interrupted")).to_have_text("We're open nine to five, Monday to Friday.")
        forward(CONVERSATION[26:])
        expect(card.locator(".transcript li")).to_have_count(7)
        expect(card.locator(".status")).to_have_text("ended (USER_CLOSED)")
    assert errors == []


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
