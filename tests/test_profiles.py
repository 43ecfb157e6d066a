"""Avatar profiles: the seeded default, pages per profile, what their tokens send to LiveAvatar, the
catalogue, framing and the budgets (at the mint and on the server)."""

import json
import re
from datetime import timedelta

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from avatar_site.asgi import in_process_transport
from profiles import budgets, catalogue
from profiles.models import AvatarProfile
from sessions_app import lifecycle
from sessions_app.emulator import agent
from sessions_app.emulator.models import EmulatedSession
from sessions_app.models import AvatarSession, EndReason, SessionStatus

pytestmark = pytest.mark.django_db(transaction=True)


class Recording(httpx.AsyncBaseTransport):
    """The emulator in process, keeping every request the LiveAvatar client sent it."""

    def __init__(self):
        self.inner = in_process_transport()
        self.requests = []

    async def handle_async_request(self, request):
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    def token_calls(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.url.path.endswith("/v1/sessions/token")]


@pytest.fixture
def liveavatar(settings):
    recording = Recording()
    settings.LIVEAVATAR_TRANSPORT = lambda: recording
    return recording


def page_config(response) -> dict:
    found = re.search(r'<script id="avatar-config" type="application/json">(.*?)</script>', response.content.decode())
    return json.loads(found.group(1))


def make_profile(**fields) -> AvatarProfile:
    values = {
        "slug": "front-desk",
        "name": "Front desk",
        "avatar_id": agent.SECOND_AVATAR_ID,
        "voice_id": agent.SECOND_VOICE_ID,
        "context_id": agent.RECEPTION_CONTEXT_ID,
        "language": "fr",
        "heading": "Ask the front desk",
        "intro": "Opening hours, directions and parking.",
    }
    return AvatarProfile.objects.create(**(values | fields))


def start_at_liveavatar(session: AvatarSession) -> None:
    """What the page does with its token: start the session (the emulator), then forward client.started."""
    emulated = EmulatedSession.objects.get(pk=session.liveavatar_session_id)
    emulated.status, emulated.started_at = EmulatedSession.STARTED, timezone.now()
    emulated.save()
    session.status, session.started_at = SessionStatus.STARTED, timezone.now()
    session.save()


def test_the_default_profile_is_seeded_from_the_liveavatar_settings(settings):
    profile = AvatarProfile.objects.default()
    assert (profile.slug, profile.avatar_id, profile.language) == (
        "default",
        settings.LIVEAVATAR_AVATAR_ID,
        settings.LIVEAVATAR_LANGUAGE,
    )
    assert (profile.interactivity, profile.max_session_duration) == ("CONVERSATIONAL", 600)
    assert AvatarProfile.objects.filter(slug="default").count() == 1  # seeded once


def test_a_token_minted_on_a_profile_page_carries_that_profiles_ids(liveavatar):
    profile = make_profile()
    response = Client().get("/p/front-desk/")
    assert response.status_code == 200
    assert (
        "Ask the front desk" in response.content.decode() and "Opening hours, directions" in response.content.decode()
    )
    [sent] = liveavatar.token_calls()
    assert sent["avatar_id"] == agent.SECOND_AVATAR_ID
    assert sent["avatar_persona"] == {
        "voice_id": agent.SECOND_VOICE_ID,
        "context_id": agent.RECEPTION_CONTEXT_ID,
        "language": "fr",
    }
    session = AvatarSession.objects.get()
    assert session.profile == profile and page_config(response)["session_id"] == str(session.id)


def test_a_voice_agent_profile_sends_the_voice_agent_instead_of_voice_and_context(liveavatar):
    make_profile(slug="agent", voice_agent_id=agent.VOICE_AGENT_ID, language="en")
    assert Client().get("/p/agent/").status_code == 200
    [sent] = liveavatar.token_calls()
    assert sent["voice_agent"] == {"id": agent.VOICE_AGENT_ID, "language": "en"} and "avatar_persona" not in sent


def test_the_home_page_serves_the_default_profile(liveavatar):
    AvatarProfile.objects.default()
    AvatarProfile.objects.filter(slug="default").update(heading="Welcome to the shop", language="de")
    response = Client().get("/")
    assert "Welcome to the shop" in response.content.decode()
    assert liveavatar.token_calls()[0]["avatar_persona"]["language"] == "de"
    assert AvatarSession.objects.get().profile.slug == "default"


def test_an_unknown_or_inactive_profile_has_no_page(liveavatar):
    make_profile(active=False)
    assert Client().get("/p/front-desk/").status_code == 404
    assert Client().get("/p/nobody/").status_code == 404
    assert not AvatarSession.objects.exists() and not liveavatar.token_calls()


def test_it_checks_a_profiles_fields():
    with pytest.raises(ValidationError, match="not an origin"):
        make_profile(allowed_origins=["https://shop.example/path"]).full_clean()
    AvatarProfile(slug="ok", name="ok", avatar_id="a", allowed_origins=["https://shop.example:8443"]).full_clean()


# Framing


def test_only_allowed_origins_may_frame_a_profiles_page():
    make_profile(allowed_origins=["https://shop.example", "http://127.0.0.1:9000"])
    framed = Client().get("/p/front-desk/", headers={"Sec-Fetch-Dest": "iframe"})
    policy = framed["Content-Security-Policy"]
    assert "frame-ancestors https://shop.example http://127.0.0.1:9000" in policy
    assert "X-Frame-Options" not in framed
    # Every other page keeps 'none'.
    AvatarProfile.objects.default()
    for path in ("/", "/healthz", "/admin/login/"):
        assert "frame-ancestors 'none'" in Client().get(path)["Content-Security-Policy"]


def test_a_framed_page_mints_only_when_shown_and_started(liveavatar):
    make_profile(allowed_origins=["https://shop.example"])
    client = Client()
    config = page_config(client.get("/p/front-desk/", headers={"Sec-Fetch-Dest": "iframe"}))
    # Served into a frame, the page mints nothing: the browser may still refuse to show it.
    assert config["mint_later"] and "session_token" not in config
    assert not AvatarSession.objects.exists() and not liveavatar.token_calls()
    response = client.post(
        config["new_session_url"], headers={"X-Mint-Ticket": config["mint_ticket"], "Origin": "http://testserver"}
    )
    assert response.status_code == 200 and response.json()["session_token"]
    assert AvatarSession.objects.get().profile.slug == "front-desk"


def test_a_ticket_of_one_profile_does_not_mint_for_another(liveavatar):
    make_profile()
    make_profile(slug="other", name="Other")
    config = page_config(Client().get("/p/front-desk/", headers={"Sec-Fetch-Dest": "iframe"}))
    response = Client().post(
        "/p/other/session", headers={"X-Mint-Ticket": config["mint_ticket"], "Origin": "http://testserver"}
    )
    assert response.status_code == 403 and "reload" in response.json()["error"]
    assert not AvatarSession.objects.exists()


def test_the_embed_details_are_readable_by_allowed_origins_only():
    make_profile(allowed_origins=["https://shop.example"])
    allowed = Client().get("/p/front-desk/embed", headers={"Origin": "https://shop.example"})
    assert allowed.status_code == 200 and allowed["Access-Control-Allow-Origin"] == "https://shop.example"
    assert allowed.json() == {"name": "Front desk", "url": "http://testserver/p/front-desk/"}
    foreign = Client().get("/p/front-desk/embed", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "Access-Control-Allow-Origin" not in foreign
    script = Client().get("/embed.js")
    assert script.status_code == 200 and script["Content-Type"].startswith("text/javascript")


# Catalogue


def test_the_catalogue_comes_from_liveavatar_and_is_cached(liveavatar):
    found = async_to_sync(catalogue.load)(refresh=True)
    assert found["avatars"] == [(agent.SECOND_AVATAR_ID, "Ada"), (agent.SANDBOX_AVATAR_ID, "Wayne")]
    assert [name for _, name in found["voices"]] == ["Emulated voice", "Emulated voice (French)"]
    assert [name for _, name in found["contexts"]] == ["Emulator default", "Front desk"]
    assert found["voice_agents"] == [(agent.VOICE_AGENT_ID, "Front desk agent")]
    calls = len(liveavatar.requests)
    assert async_to_sync(catalogue.load)() == found and len(liveavatar.requests) == calls  # from the cache
    async_to_sync(catalogue.load)(refresh=True)
    assert len(liveavatar.requests) == calls + 4


# Budgets


def test_a_visitors_minutes_cut_the_next_token_then_refuse_it(liveavatar):
    make_profile(visitor_minutes_per_day=12, max_session_duration=600)
    client = Client()
    client.get("/p/front-desk/")  # up to 10 minutes held by this one
    first = AvatarSession.objects.get()
    start_at_liveavatar(first)
    first.status, first.ended_at = SessionStatus.ENDED, first.started_at + timedelta(minutes=9)
    first.save()
    client.get("/p/front-desk/")
    assert [call["max_session_duration"] for call in liveavatar.token_calls()] == [600, 180]  # 12 - 9 minutes
    refused = client.get("/p/front-desk/")  # the second holds the last 3 minutes
    assert refused.status_code == 429
    words = page_config(refused)["error"]
    assert words.startswith(
        "You have used your 12 minutes of conversation for today. They are renewed at midnight (UTC), in "
    )
    assert len(liveavatar.token_calls()) == 2 and AvatarSession.objects.count() == 2
    # Another visitor has minutes of their own.
    assert Client().get("/p/front-desk/").status_code == 200


def test_a_profiles_live_sessions_are_capped_and_an_unstarted_token_holds_its_place_briefly(liveavatar, settings):
    make_profile(max_live_sessions=1)
    Client().get("/p/front-desk/")
    held = AvatarSession.objects.get()
    refused = Client().get("/p/front-desk/")
    assert refused.status_code == 429
    assert page_config(refused)["error"].startswith(
        "This avatar is already in 1 conversation, as many as it may hold at once. A place frees up as soon as "
    )
    # Not started within the hold: the token is void (stopped at LiveAvatar) and its place is free.
    AvatarSession.objects.filter(pk=held.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.BUDGET_START_HOLD_SECONDS + 1)
    )
    assert Client().get("/p/front-desk/").status_code == 200
    held.refresh_from_db()
    assert (held.status, held.end_reason) == (SessionStatus.EXPIRED, EndReason.NOT_STARTED_IN_TIME)
    assert EmulatedSession.objects.get(pk=held.liveavatar_session_id).status == EmulatedSession.ENDED


def test_the_site_wide_cap_counts_every_profile(liveavatar, settings):
    settings.MAX_LIVE_SESSIONS = 1
    make_profile()
    AvatarProfile.objects.default()
    assert Client().get("/").status_code == 200
    refused = Client().get("/p/front-desk/")
    assert refused.status_code == 429 and "The site is already holding 1 conversations" in page_config(refused)["error"]


async def test_the_server_stops_a_session_whose_budget_ran_out(liveavatar):
    from asgiref.sync import sync_to_async

    profile = await sync_to_async(make_profile)(minutes_per_day=1)
    from sessions_app.minting import mint_session

    session, _ = await mint_session(visitor_key="v:1", profile=profile)
    assert session.max_session_duration == 60
    await sync_to_async(start_at_liveavatar)(session)
    # A minute and ten seconds on (the visitor's page never stopped it, LiveAvatar did not either).
    counts = await lifecycle.reap_orphans(now=timezone.now() + timedelta(seconds=70))
    assert counts["over_budget"] == 1
    await session.arefresh_from_db()
    assert (session.status, session.end_reason) == (SessionStatus.ENDED, EndReason.BUDGET_EXCEEDED)
    emulated = await EmulatedSession.objects.aget(pk=session.liveavatar_session_id)
    assert (emulated.status, emulated.end_reason) == (EmulatedSession.ENDED, budgets.STOP_REASON)
    stops = [r for r in liveavatar.requests if r.url.path.endswith("/v1/sessions/stop")]
    assert len(stops) == 1 and "X-API-KEY" in stops[0].headers  # with the API key, from the server


# Per-profile live control, privacy and retention; empty fields follow the site's settings.


def test_a_profile_may_have_its_sessions_started_by_the_server(liveavatar, settings):
    settings.LIVEAVATAR_SESSION_START = "browser"
    make_profile(session_start="server", mark_operator_lines=False)
    served = page_config(Client().get("/p/front-desk/", {"start": "1"}))
    home = page_config(Client().get("/"))
    assert "session_token" not in json.dumps(served) and served["session_start"] == "server"
    assert served["mark_operator_lines"] is False
    assert home["session_start"] == "browser" and home["mark_operator_lines"] is True


def test_a_profile_chooses_what_is_redacted_and_where_phone_numbers_are_from(settings):
    from privacy.redaction import policy_for, redact

    settings.REDACTION_REGION = "US"
    german = make_profile(country="de", redaction_kinds=["phone"])
    silent = make_profile(slug="open", name="Open", redaction_enabled=False)
    said = "Ruf mich an: 030 12345678, oder schreib an anna@example.de"
    assert redact(said, policy_for(AvatarSession(profile=german)))[0] == (
        "Ruf mich an: [phone], oder schreib an anna@example.de"
    )
    assert redact(said, policy_for(AvatarSession(profile=silent)))[0] == said
    assert redact(said, policy_for(AvatarSession()))[0].endswith("[email]")  # the site's kinds


def test_a_profiles_retention_period_decides_when_its_sessions_are_purged(settings):
    from privacy.tasks import purge

    settings.RETENTION_DAYS = None  # the site keeps everything
    short = make_profile(retention_days=7)
    now = timezone.now()
    old = now - timedelta(days=8)
    mine = AvatarSession.objects.create(profile=short, status=SessionStatus.ENDED, created_at=old)
    others = AvatarSession.objects.create(
        profile=AvatarProfile.objects.default(), status=SessionStatus.ENDED, created_at=old
    )
    assert purge(now) == 1
    assert list(AvatarSession.objects.values_list("pk", flat=True)) == [others.pk]
    assert not AvatarSession.objects.filter(pk=mine.pk).exists()
