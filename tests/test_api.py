"""REST API: auth, errors, reading sessions, transcripts and events, deleting."""

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from sessions_app.models import ApiKey, AvatarSession, SessionEvent, SessionStatus, TranscriptEntry
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def read_key():
    return factories.api_key("sessions:read", name="reader")


@pytest.fixture
def write_key():
    return factories.api_key("sessions:read", "sessions:write", name="writer")


# Auth


def test_it_answers_401_json_without_a_key(client):
    response = client.get("/api/v1/sessions")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_answers_401_for_a_wrong_key(client):
    response = client.get("/api/v1/sessions", **factories.bearer("ak_not-a-key"))
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_it_answers_401_for_a_revoked_key(client, read_key):
    ApiKey.objects.update(revoked_at=timezone.now())
    assert client.get("/api/v1/sessions", **factories.bearer(read_key)).status_code == 401


def test_it_answers_403_when_the_key_lacks_the_scope(client, read_key):
    session = factories.session()
    response = client.delete(f"/api/v1/sessions/{session.id}", **factories.bearer(read_key))
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "message": "This API key does not have the sessions:write scope."}
    assert AvatarSession.objects.filter(pk=session.pk).exists()


def test_it_records_when_a_key_was_last_used(client, read_key):
    client.get("/api/v1/sessions", **factories.bearer(read_key))
    assert ApiKey.objects.get().last_used_at is not None


def test_it_throttles_each_key_per_minute(client, read_key, write_key, settings):
    settings.API_THROTTLE_PER_MINUTE = 3
    for _ in range(3):
        assert client.get("/api/v1/sessions", **factories.bearer(read_key)).status_code == 200
    response = client.get("/api/v1/sessions", **factories.bearer(read_key))
    assert response.status_code == 429
    assert response.json()["error"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= 60
    # Another key has its own allowance.
    assert client.get("/api/v1/sessions", **factories.bearer(write_key)).status_code == 200


def test_it_accepts_a_staff_session_and_needs_csrf_for_writes(read_key):
    factories.staff()
    browser = Client(enforce_csrf_checks=True)
    browser.login(username="staff", password=factories.PASSWORD)
    session = factories.session()
    assert browser.get("/api/v1/sessions").status_code == 200

    refused = browser.delete(f"/api/v1/sessions/{session.id}")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["message"]

    browser.get("/admin/")  # sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    assert browser.delete(f"/api/v1/sessions/{session.id}", HTTP_X_CSRFTOKEN=token).status_code == 204


def test_it_refuses_a_session_that_is_not_staff():
    factories.visitor()
    browser = Client()
    browser.login(username="visitor", password=factories.PASSWORD)
    assert browser.get("/api/v1/sessions").status_code == 401


# Errors outside the endpoints are JSON too


def test_it_answers_json_404_for_an_unknown_path(client, read_key):
    response = client.get("/api/v1/nothing-here", **factories.bearer(read_key))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_it_answers_json_405_with_allow(client, read_key):
    response = client.put("/api/v1/sessions", **factories.bearer(read_key))
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert "GET" in response["Allow"]


# Sessions


def test_it_lists_sessions_newest_first_with_a_count(client, read_key):
    older = factories.session(at=timezone.now() - dt.timedelta(hours=1))
    newer = factories.session()
    body = client.get("/api/v1/sessions", **factories.bearer(read_key)).json()
    assert body["count"] == 2
    assert [item["id"] for item in body["items"]] == [str(newer.id), str(older.id)]
    assert "visitor_key" not in body["items"][0]


def test_it_pages_sessions(client, read_key):
    now = timezone.now()
    made = [factories.session(at=now - dt.timedelta(minutes=minute)) for minute in range(5)]
    pages = [
        client.get(f"/api/v1/sessions?page={page}&page_size=2", **factories.bearer(read_key)).json()
        for page in (1, 2, 3)
    ]
    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    assert [item["id"] for page in pages for item in page["items"]] == [str(s.id) for s in made]
    assert all(page["count"] == 5 for page in pages)


def test_it_filters_sessions_by_status_and_date(client, read_key):
    now = timezone.now()
    factories.session(status=SessionStatus.ACTIVE, at=now)
    old = factories.session(status=SessionStatus.ENDED, at=now - dt.timedelta(days=3))
    recent = factories.session(status=SessionStatus.ENDED, at=now - dt.timedelta(hours=1))

    ended = client.get("/api/v1/sessions", {"status": "ended"}, **factories.bearer(read_key)).json()
    assert {item["id"] for item in ended["items"]} == {str(old.id), str(recent.id)}

    window = {"created_after": (now - dt.timedelta(days=1)).isoformat(), "created_before": now.isoformat()}
    assert [
        item["id"] for item in client.get("/api/v1/sessions", window, **factories.bearer(read_key)).json()["items"]
    ] == [str(recent.id)]


def test_it_searches_transcripts(client, read_key):
    pricing = factories.session(lines=[("user", "How much does the Pro plan cost?"), ("avatar", "It is 20 euros.")])
    factories.session(lines=[("user", "Hello there"), ("avatar", "Hi!")])
    body = client.get("/api/v1/sessions", {"q": "pro PLAN"}, **factories.bearer(read_key)).json()
    assert body["count"] == 1
    assert body["items"][0]["id"] == str(pricing.id)


def test_it_rejects_bad_filters_with_422(client, read_key):
    # A bare number would pass as a Unix time in pydantic; the API documents ISO 8601 only.
    for query in (
        {"status": "dancing"},
        {"created_after": "yesterday"},
        {"created_before": "12556"},
        {"page": 0},
        {"page_size": 1000},
        {"q": ["hours", "price"]},
        {"page": ["1", "2"]},
    ):
        response = client.get("/api/v1/sessions", query, **factories.bearer(read_key))
        assert response.status_code == 422, query
        assert response.json()["error"] == "validation_error"
        assert response.json()["message"]


def test_it_gets_one_session(client, read_key):
    session = factories.session(lines=[("user", "Hi")])
    body = client.get(f"/api/v1/sessions/{session.id}", **factories.bearer(read_key)).json()
    assert body["id"] == str(session.id)
    assert body["status"] == "ended"


def test_it_answers_404_for_an_unknown_session_and_422_for_a_bad_id(client, read_key):
    missing = client.get("/api/v1/sessions/00000000-0000-0000-0000-000000000000", **factories.bearer(read_key))
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "message": "No such session."}
    assert client.get("/api/v1/sessions/not-a-uuid", **factories.bearer(read_key)).status_code == 422


# Transcript


def test_it_gives_the_transcript_as_json(client, read_key):
    session = factories.session(lines=[("user", "Hi"), ("avatar", "Hello, how can I help?")])
    body = client.get(f"/api/v1/sessions/{session.id}/transcript", **factories.bearer(read_key)).json()
    assert [(e["speaker"], e["text"]) for e in body["entries"]] == [
        ("user", "Hi"),
        ("avatar", "Hello, how can I help?"),
    ]


def test_it_gives_the_transcript_as_text(client, read_key):
    session = factories.session(lines=[("user", "Hi"), ("avatar", "Hello")])
    response = client.get(f"/api/v1/sessions/{session.id}/transcript?format=text", **factories.bearer(read_key))
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == "Visitor: Hi\nAvatar: Hello\n"


def test_it_gives_the_transcript_as_webvtt(client, read_key):
    session = factories.session(lines=[("user", "Is 2 < 3?"), ("avatar", "Yes.")])
    response = client.get(f"/api/v1/sessions/{session.id}/transcript?format=vtt", **factories.bearer(read_key))
    assert response["Content-Type"].startswith("text/vtt")
    assert response.content.decode() == (
        "WEBVTT\n\n"
        "1\n00:00:01.000 --> 00:00:02.000\n<v Visitor>Is 2 &lt; 3?\n\n"
        "2\n00:00:03.000 --> 00:00:04.000\n<v Avatar>Yes.\n"
    )


def test_it_rejects_an_unknown_transcript_format(client, read_key):
    session = factories.session()
    assert (
        client.get(f"/api/v1/sessions/{session.id}/transcript?format=pdf", **factories.bearer(read_key)).status_code
        == 422
    )


# Events


def test_it_pages_a_sessions_events_in_seq_order(client, read_key):
    session = factories.session()
    for seq in (3, 1, 2):
        SessionEvent.objects.create(
            session=session,
            seq=seq,
            event_type="client.keepalive",
            source="client",
            payload={"event_type": "client.keepalive"},
        )
    first = client.get(f"/api/v1/sessions/{session.id}/events?page_size=2", **factories.bearer(read_key)).json()
    second = client.get(f"/api/v1/sessions/{session.id}/events?page_size=2&page=2", **factories.bearer(read_key)).json()
    assert first["count"] == 3
    assert [e["seq"] for e in first["items"] + second["items"]] == [1, 2, 3]


def test_it_answers_404_for_events_of_an_unknown_session(client, read_key):
    response = client.get("/api/v1/sessions/00000000-0000-0000-0000-000000000000/events", **factories.bearer(read_key))
    assert response.status_code == 404


# Delete


def test_it_deletes_an_ended_session(client, write_key):
    session = factories.session(lines=[("user", "Hi")])
    response = client.delete(f"/api/v1/sessions/{session.id}", **factories.bearer(write_key))
    assert response.status_code == 204
    assert not AvatarSession.objects.exists()
    assert not TranscriptEntry.objects.exists()


def test_it_refuses_to_delete_a_live_session(client, write_key):
    session = factories.session(status=SessionStatus.ACTIVE)
    response = client.delete(f"/api/v1/sessions/{session.id}", **factories.bearer(write_key))
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert AvatarSession.objects.filter(pk=session.pk).exists()
