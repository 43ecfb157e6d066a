"""The site as an attacker sees it: secrets, credentials, staff pages, CSRF, headers, limits, escaping."""

import json
import logging
import uuid
from pathlib import Path

import httpx
import pytest
from django.test import Client

from sessions_app import close_codes, credentials
from sessions_app.models import AvatarSession, SessionStatus, TranscriptEntry
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "la-FAKE-KEY-3b7f1e9a0c"  # recognisable anywhere it might leak
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def real_key(settings):
    """A configured API key and a LiveAvatar network that answers `answer(request)`; a test sets `answer`."""
    settings.LIVEAVATAR_API_KEY = KEY
    settings.LIVEAVATAR_EMULATOR = False
    settings.LIVEAVATAR_API_URL = "https://api.liveavatar.test"
    settings.LIVEAVATAR_MAX_RETRIES = 0
    upstream = {}
    settings.LIVEAVATAR_TRANSPORT = lambda: httpx.MockTransport(lambda request: upstream["answer"](request))
    return upstream


def ok_token(request):
    assert request.headers["X-API-KEY"] == KEY
    return httpx.Response(200, json={"code": 1000, "data": {"session_id": str(uuid.uuid4()), "session_token": "tok"}})


def echoing_error(status):
    """A misbehaving upstream that quotes the key back in its error message."""
    return lambda request: httpx.Response(
        status, json={"code": 4003, "data": None, "message": f"bad key {request.headers['X-API-KEY']}"}
    )


def test_the_api_key_appears_in_no_page_response_error_or_log_line(real_key, caplog):
    caplog.set_level(logging.DEBUG)
    seen = []
    visitor = Client()
    staff = Client()
    staff.force_login(factories.staff("boss", superuser=True))
    api_key = factories.api_key("sessions:read", "sessions:write")
    api = {"HTTP_AUTHORIZATION": f"Bearer {api_key}"}

    real_key["answer"] = ok_token
    seen.append(visitor.get("/"))
    errors = []
    for status in (401, 429, 500):
        real_key["answer"] = echoing_error(status)
        errors.append(visitor.get("/"))
        errors.append(Client().post("/api/v1/sessions", "{}", content_type="application/json", **api))
    # Every upstream failure reached the visitor and the partner as an error of ours, not a crash.
    assert [r.status_code for r in errors] == [503, 502] * 3
    seen += errors
    seen += [
        staff.get("/admin/sessions_app/avatarsession/"),
        staff.get("/dashboard/"),
        Client().get("/api/v1/sessions", **api),
        Client().get("/api/v1/openapi.json"),
        Client().get("/healthz"),
    ]
    for session in AvatarSession.objects.all():
        seen.append(staff.get(f"/admin/sessions_app/avatarsession/{session.pk}/change/"))
        seen.append(Client().get(f"/api/v1/sessions/{session.pk}", **api))

    texts = [r.content.decode(errors="replace") + json.dumps(dict(r.headers)) for r in seen]
    texts += [record.getMessage() + str(record.exc_info) for record in caplog.records]
    texts += [path.read_text(errors="replace") for path in (ROOT / "static").rglob("*") if path.is_file()]
    texts += list(AvatarSession.objects.values_list("error", flat=True))
    assert [t[:200] for t in texts if KEY in t] == []


def test_a_failing_liveavatar_gives_the_visitor_a_clear_message(real_key):
    real_key["answer"] = echoing_error(500)
    response = Client().get("/")
    assert response.status_code == 503
    assert "The avatar service is not available right now" in response.content.decode()


def test_a_credential_opens_its_own_session_only():
    mine, theirs = AvatarSession.objects.create(), AvatarSession.objects.create()
    body = json.dumps({"events": [{"seq": 1, "source": "client", "event": {"event_type": "client.keepalive"}}]})
    response = Client().post(
        f"/sessions/{theirs.pk}/events?credential={credentials.mint(mine.pk)}", body, content_type="text/plain"
    )
    assert response.status_code == 401
    assert not theirs.events.exists()
    forged = credentials.mint(mine.pk).rsplit(":", 1)[0] + ":forged"
    assert (
        Client().post(f"/sessions/{mine.pk}/events?credential={forged}", body, content_type="text/plain").status_code
        == 401
    )


async def test_websockets_refuse_foreign_origins_and_missing_credentials():
    from channels.testing import WebsocketCommunicator

    from avatar_site.asgi import application

    session = await AvatarSession.objects.acreate()
    credential = credentials.mint(session.pk)
    for path, origin in [
        (f"/ws/sessions/{session.pk}/events/?credential={credential}", b"http://evil.example"),
        ("/ws/dashboard/", b"http://evil.example"),
    ]:
        communicator = WebsocketCommunicator(application, path, headers=[(b"origin", origin)])
        connected, _ = await communicator.connect()
        assert not connected
    for path, code in [
        (f"/ws/sessions/{session.pk}/events/", close_codes.UNAUTHORIZED),
        ("/ws/dashboard/", close_codes.FORBIDDEN),
    ]:
        communicator = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://127.0.0.1")])
        await communicator.connect()  # accepted only to say why it closes
        assert await communicator.receive_output() == {"type": "websocket.close", "code": code}


@pytest.mark.parametrize("path", ["/dashboard/", "/admin/", "/admin/sessions_app/avatarsession/"])
def test_staff_pages_need_staff(path):
    assert Client().get(path).status_code == 302
    visitor = Client()
    visitor.force_login(factories.visitor())
    response = visitor.get(path)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_same_origin_posts_need_a_csrf_token():
    strict = Client(enforce_csrf_checks=True)
    strict.get("/")  # the page sets the CSRF cookie
    assert strict.post("/sessions/new").status_code == 403
    assert strict.post("/admin/login/", {"username": "x", "password": "y"}).status_code == 403
    staff = Client(enforce_csrf_checks=True)
    staff.force_login(factories.staff("boss", superuser=True))
    # The REST API with a staff session (cookie) is same-origin: it needs the CSRF header too.
    assert staff.post("/api/v1/sessions", "{}", content_type="application/json").status_code == 403


def test_security_headers(settings):
    response = Client().get("/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    policy = response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy and "object-src 'none'" in policy


def test_the_csp_allows_only_livekit_and_liveavatar_beyond_self(make_daphne_server, settings):
    # A server with a key set (the policy is built from settings at start); /healthz calls no upstream.
    server = make_daphne_server(env={"LIVEAVATAR_API_KEY": KEY, "LIVEAVATAR_API_URL": "https://api.liveavatar.com/"})
    policy = httpx.get(f"{server.url}/healthz").headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    sources = {s for value in directives.values() for s in value.split()}
    foreign = {s for s in sources if s.startswith(("http", "ws"))}
    assert foreign == {"https://api.liveavatar.com", *settings.LIVEAVATAR_LIVEKIT_HOSTS}
    assert directives["connect-src"].startswith("'self'")


def test_hsts_and_secure_cookies_behind_tls(make_daphne_server):
    # DJANGO_HTTPS=true as a deployment behind a TLS proxy sets it; the proxy says https in a header.
    server = make_daphne_server(env={"DJANGO_HTTPS": "true"})
    plain = httpx.get(f"{server.url}/healthz")
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")
    page = httpx.get(f"{server.url}/", headers={"X-Forwarded-Proto": "https"})
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    cookies = {c.split("=", 1)[0]: c for c in page.headers.get_list("set-cookie")}
    assert set(cookies) == {"avatar_visitor", "csrftoken"}
    assert all("; Secure" in cookie for cookie in cookies.values())
    assert "HttpOnly" in cookies["avatar_visitor"]


def test_minting_is_rate_limited_per_visitor(settings, real_key):
    real_key["answer"] = ok_token
    settings.MINT_RATE_PER_MINUTE = 3
    visitor = Client()
    statuses = [visitor.get("/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert AvatarSession.objects.count() == 3


def test_minting_is_rate_limited_per_client_even_without_cookies(settings, real_key):
    real_key["answer"] = ok_token
    settings.MINT_RATE_PER_MINUTE = 3
    settings.MINT_RATE_PER_ADDRESS_PER_MINUTE = 4
    statuses = [Client().get("/", REMOTE_ADDR="203.0.113.7").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]  # a fresh cookie each time: the address counts
    assert "wait a minute" in Client().get("/", REMOTE_ADDR="203.0.113.7").content.decode()
    assert Client().get("/", REMOTE_ADDR="198.51.100.9").status_code == 200  # another address is not held back
    assert set(AvatarSession.objects.values_list("client_address", flat=True)) == {"203.0.113.7", "198.51.100.9"}
    # A partner's API calls from that address have their own (per-key) limit.
    api_key = factories.api_key("sessions:write")
    response = Client().post(
        "/api/v1/sessions",
        "{}",
        content_type="application/json",
        REMOTE_ADDR="203.0.113.7",
        HTTP_AUTHORIZATION=f"Bearer {api_key}",
    )
    assert response.status_code == 201


def test_oversized_input_is_refused(settings):
    session = AvatarSession.objects.create()
    big = json.dumps(
        {"events": [{"seq": 1, "source": "client", "event": {"event_type": "client.error", "message": "x" * 70_000}}]}
    )
    response = Client().post(
        f"/sessions/{session.pk}/events?credential={credentials.mint(session.pk)}", big, content_type="text/plain"
    )
    assert response.status_code == 413
    api_key = factories.api_key("sessions:write")
    response = Client().post(
        "/api/v1/sessions",
        json.dumps({"language": "x" * 2_000_000}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_key}",
    )
    assert response.status_code == 413
    assert response.json() == {"error": "too_large", "message": "The request body is over 1,048,576 bytes."}
    assert not session.events.exists()


def test_transcripts_are_escaped_wherever_shown():
    session = AvatarSession.objects.create(status=SessionStatus.ENDED)
    TranscriptEntry.objects.create(session=session, position=1, speaker="user", text=XSS)
    staff = Client()
    staff.force_login(factories.staff("boss", superuser=True))
    api_key = factories.api_key("sessions:read")
    api = {"HTTP_AUTHORIZATION": f"Bearer {api_key}"}
    html = staff.get(f"/admin/sessions_app/avatarsession/{session.pk}/change/").content.decode()
    assert "&lt;script&gt;" in html and "<script>alert" not in html
    transcript = Client().get(f"/api/v1/sessions/{session.pk}/transcript", **api)
    assert transcript["Content-Type"].startswith("application/json")
    vtt = Client().get(f"/api/v1/sessions/{session.pk}/transcript?format=vtt", **api)
    assert vtt["Content-Type"].startswith("text/vtt") and "<script>" not in vtt.content.decode()
    text = Client().get(f"/api/v1/sessions/{session.pk}/transcript?format=text", **api)
    assert text["Content-Type"].startswith("text/plain") and text["X-Content-Type-Options"] == "nosniff"
    # The dashboard and the visitor page render transcripts with textContent, never as HTML.
    scripts = "".join(p.read_text() for p in (ROOT / "static" / "js").glob("*.js"))
    assert "innerHTML" not in scripts and "insertAdjacentHTML" not in scripts and "outerHTML" not in scripts
