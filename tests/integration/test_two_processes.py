"""Several Daphne processes behind one address share PostgreSQL and Redis: a browser forwarding to
process A is seen live by a staff member whose dashboard is connected to process B."""

import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect
from websockets.sync.client import connect

from sessions_app import credentials
from sessions_app.models import AvatarSession, SessionEvent

CONVERSATION = json.loads((Path(__file__).parent.parent / "fixtures" / "conversation.json").read_text())["events"]


@pytest.fixture
def browser(launch_browser):
    return launch_browser()


def test_a_dashboard_on_process_b_sees_a_conversation_forwarded_to_process_a(make_daphne_server, browser):
    a, b = make_daphne_server(), make_daphne_server()
    User.objects.create_user("staff", password="pass-word-42", is_staff=True)
    session = AvatarSession.objects.create()

    page = browser.new_context().new_page()
    page.goto(f"{b.url}/admin/login/?next=/dashboard/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "pass-word-42")
    page.click("input[type=submit]")
    expect(page.locator("#feed-status")).to_have_text("live")

    url = f"{a.ws_url}/ws/sessions/{session.id}/events/?credential={credentials.mint(session.id)}"
    with connect(url, origin=a.url) as forwarder:

        def forward(items):
            forwarder.send(json.dumps({"type": "events", "events": items}))
            answer = json.loads(forwarder.recv(timeout=5))
            if answer["type"] == "session.ended":  # the batch that ends it: how, then the ack
                assert answer["end_reason"] == "USER_CLOSED"
                answer = json.loads(forwarder.recv(timeout=5))
            assert answer["type"] == "ack"

        card = page.locator(f"#session-{session.id}")
        forward(CONVERSATION[:13])
        expect(card.locator("li.avatar").first).to_have_text("Avatar: Hello! I'm Wayne. How can I help you today?")
        forward(CONVERSATION[13:])
        expect(card.locator(".transcript li")).to_have_count(7)
        expect(card.locator(".status")).to_have_text("ended (USER_CLOSED)")
    assert SessionEvent.objects.filter(session=session).count() == len(CONVERSATION)
