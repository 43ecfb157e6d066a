"""The dashboard's LiveAvatar account box in Chromium: it follows the emulator's credits and warns
when they fall under the threshold."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import expect

from operations.models import LiveAvatarFailure
from sessions_app.emulator.models import EmulatedSession
from sessions_app.models import AvatarSession, SessionStatus
from tests.conftest import TEST_EMULATOR_SPEED

pytestmark = pytest.mark.e2e


def test_the_account_box_warns_when_the_emulators_credits_run_low(make_daphne_server, launch_browser, tmp_path):
    server = make_daphne_server(env={"EMULATOR_CREDITS": "2450", "LIVEAVATAR_CREDITS_CACHE_SECONDS": "0"})
    User.objects.create_user("staff", password="pass-word-42", is_staff=True)
    page = launch_browser().new_context(viewport={"width": 1100, "height": 900}).new_page()
    page.goto(f"{server.url}/admin/login/?next=/dashboard/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "pass-word-42")
    page.click("input[type=submit]")
    box = page.locator("#account")
    expect(box.locator("dd").first).to_have_text("2,450")
    expect(box.locator(".account-warning")).to_be_hidden()

    # 1,200 emulated minutes of conversation (2,400 credits) at the test's emulator speed.
    ended = timezone.now()
    minutes = 1200 / int(TEST_EMULATOR_SPEED)
    EmulatedSession.objects.create(
        status=EmulatedSession.ENDED, started_at=ended - timedelta(minutes=minutes), ended_at=ended
    )
    # An hour of conversation on our side in the last day sets the pace; one 429 an hour ago.
    AvatarSession.objects.create(
        status=SessionStatus.ENDED, started_at=ended - timedelta(hours=2), ended_at=ended - timedelta(hours=1)
    )
    LiveAvatarFailure.objects.create(
        endpoint="POST /v1/sessions/token", kind="rate_limited", status=429, message="Too many requests", retry_after=1
    )
    page.reload()
    expect(box.locator("dd").first).to_have_text("50")
    expect(box.locator(".account-warning")).to_have_text(
        "Only 50 credits left (about 25 minutes of conversation). Top up the LiveAvatar account."
    )
    expect(box.locator("dd").nth(2)).to_contain_text("in about 10 hours")
    expect(box.locator("dd").nth(3)).to_have_text("1")
    expect(box.locator("dd").nth(4)).to_contain_text("POST /v1/sessions/token failed: Too many requests (HTTP 429)")
    box.screenshot(path=str(tmp_path / "dashboard-account.png"))
