"""Profiles in the admin: picked by name from LiveAvatar's catalogue, the snippet, usage, and sessions by profile."""

import csv
import io
from html import unescape

import httpx
import pytest
from django.core.cache import cache
from django.urls import reverse

from profiles import catalogue
from profiles.models import AvatarProfile
from sessions_app.emulator import agent
from sessions_app.models import AvatarSession, SessionStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def profile():
    cache.delete(catalogue.CACHE_KEY)
    return AvatarProfile.objects.create(
        slug="front-desk",
        name="Front desk",
        avatar_id=agent.SECOND_AVATAR_ID,
        allowed_origins=["https://shop.example"],
        max_live_sessions=3,
        minutes_per_day=60,
    )


def test_avatars_voices_contexts_and_agents_are_picked_by_name(admin_client, profile):
    page = admin_client.get(reverse("admin:profiles_avatarprofile_change", args=[profile.pk]))
    form = page.context["adminform"].form
    assert form.fields["avatar_id"].choices == [(agent.SECOND_AVATAR_ID, "Ada"), (agent.SANDBOX_AVATAR_ID, "Wayne")]
    assert ("", "—") in form.fields["voice_id"].choices
    assert (agent.RECEPTION_CONTEXT_ID, "Front desk") in form.fields["context_id"].choices
    assert (agent.VOICE_AGENT_ID, "Front desk agent") in form.fields["voice_agent_id"].choices
    html = page.content.decode()
    assert '<option value="0c3f6a9e-4b1d-4e3a-9f55-2d7c8b1e6a40" selected>Ada</option>' in html


def test_it_saves_a_profile_picked_from_the_catalogue(admin_client, profile):
    response = admin_client.post(
        reverse("admin:profiles_avatarprofile_change", args=[profile.pk]),
        {
            "name": "Front desk",
            "slug": "front-desk",
            "active": "on",
            "avatar_id": agent.SANDBOX_AVATAR_ID,
            "voice_id": agent.SECOND_VOICE_ID,
            "context_id": agent.RECEPTION_CONTEXT_ID,
            "voice_agent_id": "",
            "language": "fr",
            "interactivity": "CONVERSATIONAL",
            "video_quality": "high",
            "max_session_duration": "300",
            "heading": "Ask us",
            "intro": "",
            "allowed_origins": "https://shop.example\nhttp://127.0.0.1:9000\n",
            "visitor_minutes_per_day": "10",
            "minutes_per_day": "",
            "max_live_sessions": "2",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    profile.refresh_from_db()
    assert profile.allowed_origins == ["https://shop.example", "http://127.0.0.1:9000"]
    assert (profile.voice_id, profile.visitor_minutes_per_day, profile.minutes_per_day) == (
        agent.SECOND_VOICE_ID,
        10,
        None,
    )


def test_a_bad_origin_is_refused_in_words(admin_client, profile):
    url = reverse("admin:profiles_avatarprofile_change", args=[profile.pk])
    data = admin_client.get(url).context["adminform"].form.initial
    data = {k: v for k, v in data.items() if v is not None and k not in ("id", "created_at", "updated_at")}
    data |= {"allowed_origins": "shop.example", "active": "on"}
    response = admin_client.post(url, data)
    assert "is not an origin" in str(response.context["adminform"].form.errors["allowed_origins"])
    profile.refresh_from_db()
    assert profile.allowed_origins == ["https://shop.example"]


def test_the_snippet_and_the_usage_are_shown(admin_client, profile):
    AvatarSession.objects.create(profile=profile, status=SessionStatus.ACTIVE)
    html = unescape(
        admin_client.get(reverse("admin:profiles_avatarprofile_change", args=[profile.pk])).content.decode()
    )
    assert '<script src="http://testserver/embed.js" data-profile="front-desk" async></script>' in html
    assert "Copy snippet" in html
    assert "<li>Live sessions: 1 of 3</li>" in html and "<li>Minutes today (all visitors): 0.0 of 60</li>" in html
    listing = admin_client.get(reverse("admin:profiles_avatarprofile_changelist")).content.decode()
    assert "1 of 3" in listing and "0.0 of 60" in listing


def test_the_catalogue_is_refreshed_on_request(admin_client, profile, monkeypatch):
    catalogue_url = reverse("admin:profiles_avatarprofile_changelist")
    cache.set(catalogue.CACHE_KEY, {"avatars": [], "voices": [], "contexts": [], "voice_agents": []})
    response = admin_client.post(
        reverse("admin:profiles_avatarprofile_refresh_catalogue"), {"next": catalogue_url}, follow=True
    )
    assert "catalogue is refreshed: 2 avatars, 2 voices, 2 contexts, 1 voice agents." in unescape(
        response.content.decode()
    )
    assert len(cache.get(catalogue.CACHE_KEY)["avatars"]) == 2


def test_sessions_are_filtered_and_exported_by_profile(admin_client, profile):
    mine = AvatarSession.objects.create(profile=profile, status=SessionStatus.ENDED)
    AvatarSession.objects.create(profile=AvatarProfile.objects.default(), status=SessionStatus.ENDED)
    changelist = reverse("admin:sessions_app_avatarsession_changelist")
    listed = admin_client.get(changelist, {"profile__id__exact": profile.pk})
    assert list(listed.context["cl"].result_list) == [mine]
    mine.transcript.create(position=1, speaker="user", text="Hello")
    exported = admin_client.post(changelist, {"action": "export_csv", "_selected_action": [mine.pk]})
    rows = list(csv.reader(io.StringIO(exported.content.decode())))
    assert rows[0][:2] == ["session_id", "profile"] and rows[1][:2] == [str(mine.pk), "front-desk"]


def test_without_the_catalogue_the_ids_are_typed(admin_client, profile, settings):
    settings.LIVEAVATAR_MAX_RETRIES = 0
    settings.LIVEAVATAR_TRANSPORT = lambda: httpx.MockTransport(lambda request: httpx.Response(503))
    page = admin_client.get(reverse("admin:profiles_avatarprofile_change", args=[profile.pk]))
    form = page.context["adminform"].form
    assert not hasattr(form.fields["avatar_id"], "choices") and form.initial["avatar_id"] == agent.SECOND_AVATAR_ID
    assert "catalogue could not be loaded" in unescape(page.content.decode())
    assert "type the ids instead" in unescape(page.content.decode())
