"""LiveAvatar misbehaving, end to end: slow, 5xx, 429; and answering well.

A real Daphne process runs the site with an API key set (so not the emulator) and
LIVEAVATAR_API_URL pointing at a small HTTP server on 127.0.0.1 that this test runs and tells how
to misbehave. Each case checks that the visitor page and the REST API answer within the timeout
(plus a margin), with words a visitor understands, that the failed session is stored, and that the
API key never comes back in a response or the server's log, even from an upstream that quotes it.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from sessions_app.models import AvatarSession, SessionStatus
from tests import factories

KEY = "la-FAULT-KEY-7c41d09e2b"  # recognisable anywhere it might leak
TIMEOUT_SECONDS = 1
MARGIN_SECONDS = 1.5  # Django, the database and a cold first request, on a loaded 2-core machine
SLOW_SECONDS = 3  # beyond the timeout, and bounded: the server thread ends on its own


class MisbehavingLiveAvatar:
    """Answers every call as `behaviour` says: "slow", "5xx" or "429" (or "ok"); records the calls."""

    def __init__(self):
        self.behaviour = "5xx"
        self.calls: list[dict] = []
        self.minted: list[str] = []  # LiveAvatar's session ids given out when "ok"
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream.calls.append({"path": self.path, "key": self.headers.get("X-API-KEY")})
                # A careless upstream quotes the key back; the site must not pass it on.
                quoted = f"request with key {self.headers.get('X-API-KEY')} refused"
                if upstream.behaviour == "ok":
                    upstream.minted.append(f"la-session-{len(upstream.minted) + 1}")
                    self._answer(
                        200, {"code": 1000, "data": {"session_id": upstream.minted[-1], "session_token": "token"}}
                    )
                elif upstream.behaviour == "slow":
                    time.sleep(SLOW_SECONDS)
                    self._answer(200, {"code": 1000, "data": {"session_id": "late", "session_token": "late"}})
                elif upstream.behaviour == "429":
                    self._answer(429, {"code": 4029, "data": None, "message": quoted}, {"Retry-After": "120"})
                else:
                    self._answer(503, {"code": 5000, "data": None, "message": quoted})

            do_GET = do_POST

            def _answer(self, status, body, headers=None):
                raw = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    for name, value in {
                        "Content-Type": "application/json",
                        "Content-Length": str(len(raw)),
                        **(headers or {}),
                    }.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:
                    pass  # the site gave up waiting (the slow case): nothing to answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream():
    server = MisbehavingLiveAvatar()
    yield server
    server.stop()


@pytest.fixture
def site(make_daphne_server, upstream):
    """The site on a real Daphne, with a (dummy) API key and LiveAvatar at the misbehaving server."""
    return make_daphne_server(
        env={
            "LIVEAVATAR_API_KEY": KEY,
            "LIVEAVATAR_API_URL": upstream.url,
            "LIVEAVATAR_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
            "MINT_RATE_PER_MINUTE": "100",
        }
    )


@pytest.fixture
def api_headers(site):
    api_key = factories.api_key("sessions:read", "sessions:write")
    return {"Authorization": f"Bearer {api_key}"}


def timed(method, url, **kwargs) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    # The client's own timeout is far beyond the bound: a hang shows as a failed assertion, not an error.
    response = httpx.request(method, url, timeout=SLOW_SECONDS + 10, **kwargs)
    return response, time.monotonic() - began


def page_error(response) -> str:
    start = response.text.index('<script id="avatar-config" type="application/json">')
    block = response.text[start:].split(">", 1)[1].split("</script>", 1)[0]
    return json.loads(block)["error"]


def assert_no_key(site, *responses):
    for response in responses:
        assert KEY not in response.text + json.dumps(dict(response.headers))
    assert KEY not in site.log_path.read_text(errors="replace")
    assert not AvatarSession.objects.filter(error__contains=KEY).exists()


def test_a_slow_liveavatar_times_out_with_a_clear_message_and_no_hang(site, upstream, api_headers):
    upstream.behaviour = "slow"
    page, page_seconds = timed("GET", f"{site.url}/")
    assert page_seconds < TIMEOUT_SECONDS + MARGIN_SECONDS
    assert page.status_code == 503
    assert page_error(page) == "The avatar service is taking too long to answer. Please try again in a few minutes."
    failed = AvatarSession.objects.get()
    assert (failed.status, failed.created_via) == (SessionStatus.FAILED, "page")
    assert "taking too long" in failed.error and failed.ended_at and failed.client_address == "127.0.0.1"

    api, api_seconds = timed("POST", f"{site.url}/api/v1/sessions", json={}, headers=api_headers)
    assert api_seconds < TIMEOUT_SECONDS + MARGIN_SECONDS
    assert api.status_code == 504 and api.json()["error"] == "liveavatar_timeout"
    # Minting is not idempotent: a request that may have reached LiveAvatar is never sent twice.
    assert len(upstream.calls) == 2 and {c["key"] for c in upstream.calls} == {KEY}
    assert AvatarSession.objects.filter(status=SessionStatus.FAILED).count() == 2
    assert_no_key(site, page, api)


def test_a_liveavatar_5xx_gives_a_clear_message(site, upstream, api_headers):
    upstream.behaviour = "5xx"
    page, page_seconds = timed("GET", f"{site.url}/")
    assert page_seconds < TIMEOUT_SECONDS + MARGIN_SECONDS
    assert page.status_code == 503
    assert page_error(page) == "The avatar service is not available right now. Please try again in a few minutes."
    assert "not available right now" in page.text  # shown on the page, not only in the config block
    assert AvatarSession.objects.get().status == SessionStatus.FAILED

    api, _ = timed("POST", f"{site.url}/api/v1/sessions", json={}, headers=api_headers)
    assert api.status_code == 502 and api.json()["error"] == "liveavatar_failed"
    assert "[redacted]" in api.json()["message"]  # the quoted key, removed
    # "Start a new conversation" (POST, CSRF) says the same.
    cookies = page.cookies
    again = httpx.post(
        f"{site.url}/sessions/new",
        cookies=cookies,
        timeout=10,
        headers={"X-CSRFToken": cookies["csrftoken"], "Referer": f"{site.url}/"},
    )
    assert again.status_code == 503 and "not available right now" in again.json()["error"]
    assert_no_key(site, page, api, again)


def test_a_liveavatar_429_says_busy_at_once(site, upstream, api_headers):
    upstream.behaviour = "429"  # with Retry-After: 120, far too long to hold a visitor's page for
    page, page_seconds = timed("GET", f"{site.url}/")
    assert page_seconds < 1.0 + MARGIN_SECONDS  # no wait for the Retry-After
    assert page.status_code == 503
    assert page_error(page) == "The avatar service is busy right now. Please try again in a minute."
    assert len(upstream.calls) == 1
    failed = AvatarSession.objects.get()
    assert failed.status == SessionStatus.FAILED and "busy" in failed.error

    api, api_seconds = timed("POST", f"{site.url}/api/v1/sessions", json={}, headers=api_headers)
    assert api_seconds < 1.0 + MARGIN_SECONDS
    # The API's 429 means the caller's own throttle; LiveAvatar's refusal is a failed upstream (502).
    assert api.status_code == 502 and api.json()["error"] == "liveavatar_failed"
    assert "rate_limited" in api.json()["message"] and len(upstream.calls) == 2
    assert_no_key(site, page, api)


def test_a_page_over_a_working_liveavatar_leaves_its_session_stored_with_liveavatar_s_id(site, upstream):
    upstream.behaviour = "ok"
    page, _ = timed("GET", f"{site.url}/")
    assert page.status_code == 200 and upstream.minted == ["la-session-1"]
    session = AvatarSession.objects.get()
    assert session.liveavatar_session_id == "la-session-1"
    assert (session.status, session.created_via) == (SessionStatus.CREATED, "page")
    assert f'"session_id": "{session.id}"' in page.text and '"liveavatar_session_id": "la-session-1"' in page.text
