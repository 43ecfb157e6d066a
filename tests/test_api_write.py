"""REST API writes: minting a session through the emulator, sending events, stopping; LiveAvatar faults."""

import json

import httpx
import pytest
from django.utils import timezone

from sessions_app import credentials
from sessions_app.models import AvatarSession, SessionEvent, SessionStatus
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def write_key():
    return factories.api_key("sessions:read", "sessions:write", name="crm")


@pytest.fixture
def auth(write_key):
    return {"HTTP_AUTHORIZATION": f"Bearer {write_key}"}


def post_json(client, url, body, auth):
    return client.post(url, json.dumps(body), content_type="application/json", **auth)


def mint(client, auth, body=None):
    return post_json(client, "/api/v1/sessions", body or {}, auth)


def events(*items):
    return {
        "events": [
            {"seq": seq, "ts": 1764081234567 + seq, "source": "client", "event": {"event_type": kind}}
            for seq, kind in items
        ]
    }


def test_it_mints_a_session_ready_to_use(client, auth):
    response = mint(client, auth)
    assert response.status_code == 201
    body = response.json()
    session = AvatarSession.objects.get(pk=body["session_id"])
    assert session.created_via == "api"
    assert session.visitor_key == "api:crm"
    assert body["liveavatar_session_id"] == session.liveavatar_session_id
    assert body["session_token"]
    assert body["liveavatar_api_url"] == "http://testserver/liveavatar-emulator"
    ws_prefix = f"ws://testserver/ws/sessions/{session.id}/events/?credential="
    assert body["events_url"].startswith(ws_prefix)
    assert body["events_http_url"].startswith(f"http://testserver/sessions/{session.id}/events?credential=")
    credential = httpx.URL(body["events_url"]).params["credential"]
    assert credentials.verify(credential, session.id)


def test_it_applies_allowed_overrides(client, auth):
    body = mint(
        client, auth, {"language": "fr", "sandbox": True, "interactivity": "PUSH_TO_TALK", "max_session_duration": 120}
    ).json()
    session = AvatarSession.objects.get(pk=body["session_id"])
    assert (session.is_sandbox, session.interactivity, session.max_session_duration) == (True, "PUSH_TO_TALK", 120)
    assert session.config["avatar_persona"]["language"] == "fr"
    assert (body["is_sandbox"], body["interactivity"], body["max_session_duration"]) == (True, "PUSH_TO_TALK", 120)


@pytest.mark.parametrize(
    "body",
    [
        {"interactivity": "SHOUTING"},
        {"max_session_duration": 10**6},
        {"language": "not a language"},
        {"avatar_id": "someone-else"},  # not an allowed override
        {"sandbox": 0.0},  # not coerced into a boolean
        {"max_session_duration": "120"},  # nor a string into a number
    ],
)
def test_it_rejects_overrides_it_does_not_allow(client, auth, body):
    response = mint(client, auth, body)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert not AvatarSession.objects.exists()


def test_it_answers_400_for_a_body_that_is_not_json(client, auth):
    response = client.post("/api/v1/sessions", "{nope", content_type="application/json", **auth)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_minting_needs_the_write_scope(client):
    reader = factories.api_key("sessions:read", name="reader")
    assert client.post("/api/v1/sessions", HTTP_AUTHORIZATION=f"Bearer {reader}").status_code == 403
    assert client.post("/api/v1/sessions").status_code == 401
    assert not AvatarSession.objects.exists()


def failing_liveavatar(settings, handler):
    """LiveAvatar answering through `handler` at the network edge (an httpx transport)."""
    settings.LIVEAVATAR_MAX_RETRIES = 0
    settings.LIVEAVATAR_TRANSPORT = lambda: httpx.MockTransport(handler)


def test_it_answers_502_when_liveavatar_fails(client, auth, settings):
    failing_liveavatar(
        settings,
        lambda request: httpx.Response(500, json={"code": 5000, "data": None, "message": "Internal error"}),
    )
    response = mint(client, auth)
    assert response.status_code == 502
    assert response.json()["error"] == "liveavatar_failed"
    assert settings.EMULATOR_API_KEY not in response.content.decode()
    assert AvatarSession.objects.get().status == SessionStatus.FAILED


def test_it_answers_504_when_liveavatar_times_out(client, auth, settings):
    def hang(request):
        raise httpx.ReadTimeout("timed out", request=request)

    failing_liveavatar(settings, hang)
    response = mint(client, auth)
    assert response.status_code == 504
    assert response.json()["error"] == "liveavatar_timeout"


def test_it_stores_a_batch_of_events_exactly_once(client, auth):
    session_id = mint(client, auth).json()["session_id"]
    url = f"/api/v1/sessions/{session_id}/events"
    first = post_json(client, url, events((1, "client.token_received"), (2, "client.start_requested")), auth)
    assert first.status_code == 200
    assert first.json() == {"acked": [1, 2], "errors": []}
    # A retry of the same batch is acknowledged again but stored once.
    again = post_json(client, url, events((1, "client.token_received"), (2, "client.start_requested")), auth)
    assert again.json()["acked"] == [1, 2]
    assert list(SessionEvent.objects.filter(session_id=session_id).values_list("seq", flat=True)) == [1, 2]
    listed = client.get(url, **auth).json()
    assert [e["event_type"] for e in listed["items"]] == ["client.token_received", "client.start_requested"]


def test_it_reports_bad_events_and_keeps_the_good_ones(client, auth):
    session_id = mint(client, auth).json()["session_id"]
    batch = events((1, "client.started"))
    batch["events"].append({"seq": 2, "source": "martian", "event": {"event_type": "x"}})
    body = post_json(client, f"/api/v1/sessions/{session_id}/events", batch, auth).json()
    assert body["acked"] == [1]
    assert body["errors"][0]["code"] == "bad_event"
    assert body["errors"][0]["seqs"] == [2]


def test_it_refuses_a_batch_over_the_limit(client, auth, settings):
    settings.INGEST_MAX_BATCH = 2
    session_id = mint(client, auth).json()["session_id"]
    response = post_json(
        client, f"/api/v1/sessions/{session_id}/events", events((1, "a.b"), (2, "a.b"), (3, "a.b")), auth
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_it_rejects_a_batch_that_is_no_batch(client, auth):
    session_id = mint(client, auth).json()["session_id"]
    response = post_json(client, f"/api/v1/sessions/{session_id}/events", {"events": "many"}, auth)
    assert response.status_code == 422


def test_it_answers_404_for_events_of_an_unknown_session(client, auth):
    response = post_json(
        client, "/api/v1/sessions/00000000-0000-0000-0000-000000000000/events", events((1, "client.started")), auth
    )
    assert response.status_code == 404


def test_it_stops_a_live_session_and_then_answers_409(client, auth):
    session_id = mint(client, auth).json()["session_id"]
    stopped = client.post(f"/api/v1/sessions/{session_id}/stop", **auth)
    assert stopped.status_code == 200
    assert stopped.json()["status"] == "ended"
    assert AvatarSession.objects.get(pk=session_id).ended_at <= timezone.now()
    again = client.post(f"/api/v1/sessions/{session_id}/stop", **auth)
    assert again.status_code == 409
    assert again.json()["error"] == "conflict"


def test_it_answers_502_when_liveavatar_cannot_stop(client, auth, settings):
    session_id = mint(client, auth).json()["session_id"]
    failing_liveavatar(
        settings,
        lambda request: httpx.Response(503, json={"code": 5030, "data": None, "message": "Unavailable"}),
    )
    response = client.post(f"/api/v1/sessions/{session_id}/stop", **auth)
    assert response.status_code == 502
    assert AvatarSession.objects.get(pk=session_id).is_live
