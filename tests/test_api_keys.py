"""API keys: the create_api_key command, the admin (raw key shown once, revoke), the throttle across processes."""

import io
import time

import httpx
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from sessions_app.models import ApiKey


@pytest.mark.django_db
def test_the_command_prints_a_working_key_once(client):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "create_api_key", "--name", "CRM sync", "--scopes", "sessions:read,sessions:write", stdout=out, stderr=err
    )
    raw = out.getvalue().strip()
    key = ApiKey.objects.get()
    assert (key.name, key.scopes) == ("CRM sync", ["sessions:read", "sessions:write"])
    assert key.key_hash == ApiKey.hash(raw) and raw not in str(key.__dict__)
    assert "cannot be shown again" in err.getvalue()
    assert client.get("/api/v1/sessions", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200


@pytest.mark.django_db
def test_the_command_refuses_unknown_scopes():
    with pytest.raises(CommandError, match="sessions:admin"):
        call_command("create_api_key", "--name", "x", "--scopes", "sessions:admin", stdout=io.StringIO())
    assert not ApiKey.objects.exists()


@pytest.fixture
def staff_client(client):
    User.objects.create_superuser("boss", password="pw")
    client.login(username="boss", password="pw")
    return client


@pytest.mark.django_db
def test_the_admin_shows_a_new_key_once(staff_client):
    response = staff_client.post(
        "/admin/sessions_app/apikey/add/", {"name": "mobile app", "scopes": ["sessions:read"]}, follow=True
    )
    messages = [str(m) for m in response.context["messages"]]
    key = ApiKey.objects.get()
    raw = next(word for m in messages for word in m.split() if word.startswith("ak_"))
    assert key.key_hash == ApiKey.hash(raw)
    assert key.scopes == ["sessions:read"]
    # Later pages never show it again: only its prefix.
    listing = staff_client.get("/admin/sessions_app/apikey/").content.decode()
    assert key.prefix in listing and raw not in listing
    assert raw not in staff_client.get(f"/admin/sessions_app/apikey/{key.pk}/change/").content.decode()


@pytest.mark.django_db
def test_the_admin_revokes_keys(staff_client, client):
    key, raw = ApiKey.create("old", ["sessions:read"])
    staff_client.post("/admin/sessions_app/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None
    staff_client.logout()
    assert client.get("/api/v1/sessions", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


def test_the_throttle_holds_across_daphne_processes(make_daphne_server):
    env = {"API_THROTTLE_PER_MINUTE": "4"}
    first, second = make_daphne_server(env=env), make_daphne_server(env=env)
    raw = ApiKey.create("busy", ["sessions:read"])[1]
    headers = {"Authorization": f"Bearer {raw}"}
    if time.time() % 60 > 55:  # keep the six requests inside one throttle minute
        time.sleep(60 - time.time() % 60)
    statuses = [
        httpx.get(f"{server.url}/api/v1/sessions", headers=headers).status_code
        for server in (first, second, first, second, first, second)
    ]
    # A per-process count would have let all six through (three each).
    assert statuses == [200, 200, 200, 200, 429, 429]
