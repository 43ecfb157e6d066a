"""A visitor in Chromium types an e-mail address, a phone number and a card number: the site stores
none of them, on any path (events, transcript, session rows, webhook deliveries, the server's log)."""

import re

import pytest
from django.apps import apps
from django.core import serializers
from playwright.sync_api import expect

from sessions_app.models import AvatarSession, TranscriptEntry
from tests.conftest import BROWSER_TIMEOUT_MS, FAKE_MIC, GRANT_MIC
from tests.e2e.test_visitor_page import session_id, start, transcript_items, wait_avatar_quiet, wait_forwarded
from tests.waiting import transcript_caught_up_sync
from webhooks.models import Endpoint

pytestmark = pytest.mark.e2e

EMAIL, PHONE, CARD = "jane.doe@example.com", "(212) 555-0199", "4111 1111 1111 1111"
# Each as written, and its digits run together.
FORBIDDEN = [EMAIL, PHONE, CARD, "2125550199", "4111111111111111"]


def everything_stored() -> str:
    """Every row of the site's own apps, as JSON (the emulator's tables are LiveAvatar's side)."""
    models = [m for name in ("sessions_app", "privacy", "webhooks") for m in apps.get_app_config(name).get_models()]
    return "\n".join(serializers.serialize("json", model.objects.all()) for model in models)


def test_what_a_visitor_types_is_stored_without_personal_data(daphne_server, launch_browser):
    # A subscribed endpoint, so that webhook deliveries are among what is stored.
    Endpoint.objects.create(url="http://127.0.0.1:9/hooks", events=["session.started", "session.ended"])
    page = launch_browser(FAKE_MIC, GRANT_MIC).new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    start(page, daphne_server.url)
    wait_avatar_quiet(page)

    page.get_by_label("Message").fill(f"I am {EMAIL}, call me on {PHONE}, my card is {CARD}")
    page.get_by_role("button", name="Send").click()
    # The visitor's page shows what was typed; the avatar echoes it back.
    expect(transcript_items(page).nth(1)).to_contain_text(CARD)
    expect(transcript_items(page).nth(2)).to_contain_text("Tell me more")
    wait_avatar_quiet(page)
    sid = session_id(page)
    page.get_by_role("button", name="End conversation").click()
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^Ended\."))
    wait_forwarded(page)
    transcript_caught_up_sync(sid)

    typed = TranscriptEntry.objects.get(session_id=sid, position=2)
    assert typed.text == "I am [email], call me on [phone], my card is [card]"
    echoed = TranscriptEntry.objects.get(session_id=sid, position=3)
    assert echoed.text == "You said: I am [email], call me on [phone], my card is [card]. Tell me more."
    assert AvatarSession.objects.get(pk=sid).webhook_deliveries.exists()
    stored = everything_stored()
    log = daphne_server.log_path.read_text(errors="replace")
    for secret in FORBIDDEN:
        assert secret not in stored, secret
        assert secret not in log, secret
