"""/api/v1/profiles and the profile of sessions in the API."""

import pytest
from django.test import Client

from profiles.models import AvatarProfile
from sessions_app.emulator import agent
from sessions_app.models import ApiKey, AvatarSession

pytestmark = pytest.mark.django_db(transaction=True)

NEW = {"slug": "front-desk", "name": "Front desk", "avatar_id": agent.SECOND_AVATAR_ID, "language": "fr"}


def api(scopes=("profiles:read", "profiles:write", "sessions:read", "sessions:write")):
    raw = ApiKey.create("test", list(scopes))[1]
    return Client(headers={"Authorization": f"Bearer {raw}"})


def test_it_creates_reads_changes_and_deletes_a_profile():
    client = api()
    created = client.post("/api/v1/profiles", NEW, content_type="application/json")
    assert created.status_code == 201
    body = created.json()
    assert (body["slug"], body["language"], body["voice_id"], body["max_live_sessions"]) == (
        "front-desk",
        "fr",
        "",
        None,
    )
    assert body["usage"] == {"live_sessions": 0, "minutes_today": 0.0}
    changed = client.patch(
        "/api/v1/profiles/front-desk",
        {"max_live_sessions": 3, "allowed_origins": ["https://shop.example"], "voice_id": agent.SECOND_VOICE_ID},
        content_type="application/json",
    )
    assert changed.status_code == 200
    assert changed.json()["max_live_sessions"] == 3 and changed.json()["voice_id"] == agent.SECOND_VOICE_ID
    assert (
        client.patch("/api/v1/profiles/front-desk", {"voice_id": None}, content_type="application/json").json()[
            "voice_id"
        ]
        == ""
    )
    assert "front-desk" in [p["slug"] for p in client.get("/api/v1/profiles").json()]
    assert client.delete("/api/v1/profiles/front-desk").status_code == 204
    assert client.get("/api/v1/profiles/front-desk").status_code == 404


def test_the_per_profile_privacy_and_control_settings_are_set_over_the_api():
    client = api()
    client.post("/api/v1/profiles", NEW, content_type="application/json")
    settings_of_profile = {
        "session_start": "server",
        "mark_operator_lines": True,
        "redaction_enabled": True,
        "redaction_kinds": ["email", "card"],
        "country": "DE",
        "retention_days": 30,
    }
    changed = client.patch("/api/v1/profiles/front-desk", settings_of_profile, content_type="application/json")
    assert changed.status_code == 200
    assert {name: changed.json()[name] for name in settings_of_profile} == settings_of_profile
    profile = AvatarProfile.objects.get(slug="front-desk")
    assert profile.starts_on_server and profile.kept_days == 30
    # Back to the site's settings: empty or null.
    reset = {"session_start": "", "mark_operator_lines": None, "redaction_kinds": [], "country": ""}
    reset["retention_days"] = None
    assert client.patch("/api/v1/profiles/front-desk", reset, content_type="application/json").status_code == 200
    profile.refresh_from_db()
    assert (profile.session_start, profile.redaction_kinds, profile.retention_days) == ("", [], None)
    for bad in ({"redaction_kinds": ["names"]}, {"country": "de"}, {"retention_days": 0}, {"session_start": "page"}):
        refused = client.patch("/api/v1/profiles/front-desk", bad, content_type="application/json")
        assert refused.status_code == 422, bad
    profile.refresh_from_db()
    assert (profile.session_start, profile.redaction_kinds, profile.retention_days) == ("", [], None)


def test_it_refuses_bad_profiles_and_changes_nothing():
    client = api()
    client.post("/api/v1/profiles", NEW, content_type="application/json")
    duplicate = client.post("/api/v1/profiles", NEW, content_type="application/json")
    assert duplicate.status_code == 409 and duplicate.json()["error"] == "conflict"
    bad_origin = client.patch(
        "/api/v1/profiles/front-desk", {"allowed_origins": ["https://shop.example/"]}, content_type="application/json"
    )
    assert bad_origin.status_code == 422 and "allowed_origins" in bad_origin.json()["message"]
    assert (
        client.patch("/api/v1/profiles/front-desk", {"name": None}, content_type="application/json").status_code == 422
    )
    profile = AvatarProfile.objects.get(slug="front-desk")
    assert (profile.allowed_origins, profile.name) == ([], "Front desk")


def test_the_default_profile_and_one_with_sessions_are_not_deleted():
    client = api()
    AvatarProfile.objects.default()
    assert client.delete("/api/v1/profiles/default").status_code == 409
    client.post("/api/v1/profiles", NEW, content_type="application/json")
    assert (
        client.post("/api/v1/sessions", {"profile": "front-desk"}, content_type="application/json").status_code == 201
    )
    refused = client.delete("/api/v1/profiles/front-desk")
    assert refused.status_code == 409 and "active to false" in refused.json()["message"]


def test_profiles_need_their_scopes():
    reader = api(["sessions:read"])
    assert reader.get("/api/v1/profiles").status_code == 403
    assert api(["profiles:read"]).post("/api/v1/profiles", NEW, content_type="application/json").status_code == 403
    assert Client().get("/api/v1/profiles").status_code == 401


def test_sessions_report_and_filter_by_profile():
    client = api()
    client.post("/api/v1/profiles", NEW, content_type="application/json")
    mine = client.post("/api/v1/sessions", {"profile": "front-desk"}, content_type="application/json").json()
    client.post("/api/v1/sessions", {}, content_type="application/json")
    listed = client.get("/api/v1/sessions", {"profile": "front-desk"}).json()
    assert [s["id"] for s in listed["items"]] == [mine["session_id"]]
    assert listed["items"][0]["profile"] == "front-desk"
    assert client.get(f"/api/v1/sessions/{mine['session_id']}").json()["profile"] == "front-desk"
    assert AvatarSession.objects.filter(profile__slug="default").count() == 1
    unknown = client.post("/api/v1/sessions", {"profile": "nobody"}, content_type="application/json")
    assert unknown.status_code == 404 and AvatarSession.objects.count() == 2
