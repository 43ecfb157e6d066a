"""Operations in one process: who may scrape /metrics, the credits gauge and the account box
following the emulator's credits, LiveAvatar's 429s counted and remembered, JSON log lines."""

import io
import json
import logging
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from operations import account, logs
from operations.models import LiveAvatarFailure
from profiles.models import AvatarProfile
from sessions_app import liveavatar
from sessions_app.emulator.models import EmulatedSession

TOKEN = "scrape-token-0123456789"


def samples(text: str) -> dict:
    """{(sample name, sorted label items): value} of a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture(autouse=True)
def fresh_credits(monkeypatch):
    monkeypatch.setattr(account, "_last", None)


@override_settings(METRICS_TOKEN=TOKEN)
@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_scrape_without_the_token_or_staff(client):
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 403
    client.force_login(User.objects.create_user("visitor"))
    assert client.get("/metrics").status_code == 403


@override_settings(METRICS_TOKEN="")
@pytest.mark.django_db(transaction=True)
def test_it_refuses_any_bearer_token_when_none_is_set(client):
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 403


@override_settings(METRICS_TOKEN=TOKEN)
@pytest.mark.django_db(transaction=True)
def test_it_lets_the_token_or_staff_scrape(client):
    AvatarProfile.objects.default()  # every profile has its series, at 0 with no session live
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    assert ("avatar_site_live_sessions", (("profile", "default"), ("status", "active"))) in samples(
        response.content.decode()
    )
    client.force_login(User.objects.create_user("staff", is_staff=True))
    assert client.get("/metrics").status_code == 200


def _used(minutes: int) -> EmulatedSession:
    """An emulated conversation that used `minutes` minutes (2 credits each) and is over."""
    ended = timezone.now()
    return EmulatedSession.objects.create(
        status=EmulatedSession.ENDED, started_at=ended - timedelta(minutes=minutes), ended_at=ended
    )


@override_settings(EMULATOR_CREDITS=1000.0, LIVEAVATAR_CREDITS_CACHE_SECONDS=0, EMULATOR_SPEED=1.0)
@pytest.mark.django_db(transaction=True)
def test_the_credits_gauge_follows_the_emulators_credits(admin_client):
    def gauge():
        return samples(admin_client.get("/metrics").content.decode())[("avatar_site_liveavatar_credits", ())]

    assert gauge() == 1000
    _used(10)
    assert gauge() == 980


@override_settings(EMULATOR_CREDITS=1000.0, LIVEAVATAR_CREDITS_CACHE_SECONDS=0, EMULATOR_SPEED=1.0)
@pytest.mark.django_db(transaction=True)
def test_the_account_box_warns_when_credits_fall_under_the_threshold(admin_client, settings):
    box = admin_client.get("/dashboard/account").json()
    assert box["credits_left"] == 1000 and box["warning"] == ""
    _used(480)  # 960 credits
    box = admin_client.get("/dashboard/account").json()
    assert box["credits_left"] == 40
    assert box["warning"].startswith("Only 40 credits left (about 20 minutes of conversation)")


@override_settings(LIVEAVATAR_CREDITS_CACHE_SECONDS=300)
@pytest.mark.django_db(transaction=True)
def test_credits_are_read_once_for_a_few_minutes(admin_client):
    admin_client.get("/dashboard/account")
    _used(10)
    assert admin_client.get("/dashboard/account").json()["credits_left"] == 1000


@pytest.mark.django_db(transaction=True)
def test_the_account_box_needs_staff(client):
    assert client.get("/dashboard/account").status_code == 302


@pytest.mark.django_db(transaction=True)
async def test_a_429_is_counted_waited_for_and_remembered_in_words():
    answers = [
        httpx.Response(429, headers={"X-RateLimit-Reset": "0.05"}, json={"code": 4029, "message": "Too many requests"}),
        httpx.Response(200, json={"code": 1000, "data": {"credits_left": "12.00"}, "message": "ok"}),
    ]
    client = liveavatar.LiveAvatarClient(
        "http://liveavatar.test", "key-0123456789", transport=httpx.MockTransport(lambda request: answers.pop(0))
    )
    await LiveAvatarFailure.objects.all().adelete()  # rows that other tests' threads wrote outside their transactions
    assert await client.credits() == {"credits_left": "12.00"}  # waited out the window, then asked again
    failure = await LiveAvatarFailure.objects.aget()
    assert (failure.status, failure.retry_after, failure.endpoint) == (429, 0.05, "GET /v1/users/credits")
    assert failure.in_words() == "GET /v1/users/credits failed: Too many requests (HTTP 429)"


def test_json_lines_carry_the_request_and_session_and_no_secret(settings):
    settings.LIVEAVATAR_API_KEY = "real-key-that-must-never-show"
    logs.RedactSecrets._values = None
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFields())
    handler.addFilter(logs.RedactSecrets())
    logger = logging.getLogger("tests.operations")
    logger.addHandler(handler)
    try:
        logs.REQUEST_ID.set("req-12345678")
        logs.bind_session("3c90c3cc-0d44-4b50-8888-8dd25736052a")
        logger.warning("called with %s", "real-key-that-must-never-show")
    finally:
        logger.removeHandler(handler)
        logs.unbind()
        logs.RedactSecrets._values = None
    line = json.loads(stream.getvalue())
    assert line["message"] == "called with [redacted]"
    assert line["session_id"] == "3c90c3cc-0d44-4b50-8888-8dd25736052a" and line["request_id"] == "req-12345678"
    assert {"time", "level", "logger", "process"} <= set(line)


@pytest.mark.django_db(transaction=True)
def test_the_alerts_and_the_grafana_dashboard_use_series_the_site_has(admin_client):
    families = {family.name for family in text_string_to_metric_families(admin_client.get("/metrics").content.decode())}
    deploy = Path(__file__).resolve().parent.parent / "deploy"
    used = set()
    for path in (deploy / "prometheus" / "alerts.yml", deploy / "grafana" / "avatar-site.json"):
        used |= set(re.findall(r"avatar_site_\w+", path.read_text()))
    suffixes = ("", "_total", "_bucket", "_count", "_sum")
    unknown = {name for name in used if not any(name == family + suffix for family in families for suffix in suffixes)}
    assert used and not unknown
