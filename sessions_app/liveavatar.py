"""Async client of the LiveAvatar REST API (FULL mode), see ../shared/liveavatar/API.md.

Contract relied on:
- Base URL + `/v1/...`; JSON bodies wrapped in `{code, data, message}`. Success is any HTTP 2xx,
  whatever the envelope code (the docs say 100, the SDK 1000); unwrapped bodies are accepted too.
- `X-API-KEY` authenticates everything except `/v1/sessions/start`, which takes only
  `Authorization: Bearer <session token>`. Stop and keep-alive take either.
- Errors carry the same envelope (`message`, 4-digit `code`) or FastAPI's `{detail: [{msg}]}`.

Every failure becomes one `LiveAvatarError`. Retries: calls that are safe to repeat (GETs,
keep-alive, stop) are retried on network errors, timeouts, 429 and 5xx. Token minting and start
are not idempotent (each mints a session or escrows credits), so they are retried only when the
request certainly had no effect: a refused connection, or a 429. A 429 waits for `Retry-After`
(else `X-RateLimit-Reset`, the seconds left in LiveAvatar's one-second window) when that is short;
a longer wait is not worth holding a visitor's page for, so it fails at once.

The API key lives only in the request headers: never in logs, exceptions or reprs.

Connections: one `httpx.AsyncClient` (a connection pool) per event loop and client configuration,
shared by every `LiveAvatarClient` built with that configuration, so a page visit reuses a kept-alive
connection instead of building a client (about 40 ms: a new SSL context and pool) per call. Pools
are keyed by the running loop because an AsyncClient's connections belong to the loop that opened
them (tests and `asyncio.run` make new loops); a pool is closed when its loop shuts down its async
generators (asyncio.run, asgiref's async_to_sync, pytest-asyncio), or by `aclose_pools()`.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import ssl
import threading
import time
import weakref

import httpx
from django.conf import settings
from django.utils.module_loading import import_string

from operations import failures, metrics

logger = logging.getLogger(__name__)

# https, so a site behind TLS (DJANGO_HTTPS) does not redirect its own in-process calls to the emulator.
EMULATOR_BASE_URL = "https://127.0.0.1/liveavatar-emulator"
# Longest Retry-After we wait for; beyond it the caller gets a rate_limited error at once.
MAX_RETRY_AFTER_SECONDS = 5.0
BACKOFF_SECONDS = 0.25

_VISITOR_MESSAGES = {
    "auth": "The avatar service did not accept this site's credentials. The site owner needs to fix its API key.",
    "no_credits": "The avatar service has no conversation credits left for this site. Please try again later.",
    "rate_limited": "The avatar service is busy right now. Please try again in a minute.",
    "unavailable": "The avatar service is not available right now. Please try again in a few minutes.",
    "timeout": "The avatar service is taking too long to answer. Please try again in a few minutes.",
}
_DEFAULT_VISITOR_MESSAGE = "The avatar could not be set up because of a problem on our side. Please try again later."


# Connection pools: loop -> (configuration -> AsyncClient, the async generator that closes them with the loop).
_pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


def _shared_ssl_context() -> ssl.SSLContext:
    """One verifying SSL context for the process (building one loads the CA bundle: tens of ms)."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


async def _close_with_loop(clients: dict):
    """Suspended until the loop shuts down its async generators, then closes this loop's pools."""
    try:
        yield
    finally:
        pending = list(clients.values())
        clients.clear()
        for http in pending:
            try:
                await http.aclose()
            except Exception:  # a loop in shutdown: the sockets go with it
                logger.debug("closing a LiveAvatar connection pool failed", exc_info=True)


async def _pooled_http(key: tuple, build) -> httpx.AsyncClient:
    """The running loop's AsyncClient for `key`, built by `build()` on first use."""
    loop = asyncio.get_running_loop()
    with _pools_lock:
        entry = _pools.get(loop)
        if entry is None:
            clients: dict = {}
            closer = _close_with_loop(clients)
            entry = _pools[loop] = (clients, closer)
            fresh = True
        else:
            clients, closer = entry
            fresh = False
        http = clients.get(key)
        if http is None or http.is_closed:
            http = clients[key] = build()
    if fresh:
        # Started here, so the loop's async-generator hooks track it and close it at shutdown.
        await closer.asend(None)
    return http


async def aclose_pools() -> None:
    """Close the running loop's LiveAvatar connection pools now (they are rebuilt on next use)."""
    with _pools_lock:
        entry = _pools.pop(asyncio.get_running_loop(), None)
    if entry is not None:
        await entry[1].aclose()


class LiveAvatarError(Exception):
    """A failed LiveAvatar call.

    `kind` is one of: auth, no_credits, validation, not_found, rate_limited, unavailable, timeout,
    bad_response, error.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        status: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
        sent: bool = True,
    ):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.code = code
        self.retry_after = retry_after
        # False when the request certainly never reached LiveAvatar (no connection), so any call may be retried.
        self.sent = sent

    def __str__(self):
        details = ", ".join(
            f"{name} {value}" for name, value in (("HTTP", self.status), ("code", self.code)) if value is not None
        )
        return f"{self.message} ({self.kind}{', ' + details if details else ''})"

    @property
    def visitor_message(self) -> str:
        """What went wrong, in words a visitor understands."""
        return _VISITOR_MESSAGES.get(self.kind, _DEFAULT_VISITOR_MESSAGE)


def _kind_for(status: int, message: str) -> str:
    if status == 402 or "credit" in message.lower():
        return "no_credits"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status in (400, 409, 422):
        return "validation"
    if status >= 500:
        return "unavailable"
    return "error"


def _error_message(response: httpx.Response) -> tuple[str, int | None]:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}", None
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}", None
    code = body.get("code") if isinstance(body.get("code"), int) else None
    if body.get("message"):
        return str(body["message"]), code
    if isinstance(body.get("detail"), list):
        return "; ".join(str(item.get("msg", item)) for item in body["detail"] if isinstance(item, dict)), code
    return str(body.get("detail") or body.get("error") or f"HTTP {response.status_code}"), code


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return _rate_limit_reset(response) if response.status_code == 429 else None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _rate_limit_reset(response: httpx.Response) -> float | None:
    """X-RateLimit-Reset: the seconds left in the current window (a large number is a Unix time)."""
    try:
        value = float(response.headers.get("X-RateLimit-Reset", ""))
    except ValueError:
        return None
    return max(0.0, value - time.time() if value > 10**9 else value)


class LiveAvatarClient:
    """One LiveAvatar account (or the emulator). Cheap to build: calls share the loop's connection pool."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        seconds = settings.LIVEAVATAR_TIMEOUT_SECONDS if timeout is None else timeout
        self.timeout = httpx.Timeout(seconds, connect=min(5.0, seconds))
        self.max_retries = settings.LIVEAVATAR_MAX_RETRIES if max_retries is None else max_retries
        self.transport = transport

    def __repr__(self):
        return f"<LiveAvatarClient {self.base_url}>"

    # Sessions

    async def create_token(self, config: dict) -> dict:
        """POST /v1/sessions/token: mint a session token. Returns {session_id, session_token}."""
        return await self._request("POST", "/v1/sessions/token", json=config, idempotent=False)

    async def start(self, session_token: str) -> dict:
        """POST /v1/sessions/start (Bearer only). Returns session_id, livekit_url, livekit_client_token, ..."""
        return await self._request("POST", "/v1/sessions/start", bearer=session_token, idempotent=False)

    async def keep_alive(self, session_id: str | None = None, session_token: str | None = None) -> None:
        """POST /v1/sessions/keep-alive, with the session token when given, else the API key + session_id."""
        body = {} if session_token else {"session_id": session_id}
        await self._request("POST", "/v1/sessions/keep-alive", json=body, bearer=session_token)

    async def stop(
        self, session_id: str | None = None, session_token: str | None = None, reason: str = "USER_CLOSED"
    ) -> None:
        """POST /v1/sessions/stop. A 404 (session already gone) raises kind "not_found"."""
        body = {"reason": reason} if session_token else {"session_id": session_id, "reason": reason}
        await self._request("POST", "/v1/sessions/stop", json=body, bearer=session_token)

    async def get_session(self, session_id: str) -> dict:
        """GET /v1/sessions/{id}: one session entry (with end_reason once it has ended)."""
        return await self._request("GET", f"/v1/sessions/{session_id}")

    async def list_sessions(self, type: str = "active", page: int = 1, page_size: int = 20) -> dict:
        """GET /v1/sessions: {count, next, previous, results} of active or historic sessions."""
        return await self._request("GET", "/v1/sessions", params={"type": type, "page": page, "page_size": page_size})

    async def transcript(self, session_id: str, start_timestamp: int | None = None) -> dict:
        """GET /v1/sessions/{id}/transcript: {session_active, next_timestamp, transcript_data}."""
        params = {"start_timestamp": start_timestamp} if start_timestamp is not None else None
        return await self._request("GET", f"/v1/sessions/{session_id}/transcript", params=params)

    async def delete_events(self, session_id: str) -> None:
        """DELETE /v1/sessions/{id}/events: LiveAvatar forgets what it stored of the session (its transcript)."""
        await self._request("DELETE", f"/v1/sessions/{session_id}/events")

    # Account resources

    async def list_avatars(self, public: bool = False, page: int = 1, page_size: int = 20) -> dict:
        """GET /v1/avatars (or /v1/avatars/public)."""
        path = "/v1/avatars/public" if public else "/v1/avatars"
        return await self._request("GET", path, params={"page": page, "page_size": page_size})

    async def list_voices(self, page: int = 1, page_size: int = 20) -> dict:
        """GET /v1/voices."""
        return await self._request("GET", "/v1/voices", params={"page": page, "page_size": page_size})

    async def list_contexts(self, page: int = 1, page_size: int = 20) -> dict:
        """GET /v1/contexts."""
        return await self._request("GET", "/v1/contexts", params={"page": page, "page_size": page_size})

    async def list_voice_agents(self, page: int = 1, page_size: int = 20) -> dict:
        """GET /v1/voice_agents."""
        return await self._request("GET", "/v1/voice_agents", params={"page": page, "page_size": page_size})

    async def list_languages(self) -> list:
        """GET /v1/languages: [{language, code}]."""
        return await self._request("GET", "/v1/languages")

    async def credits(self) -> dict:
        """GET /v1/users/credits: {credits_left} (a decimal number as a string)."""
        return await self._request("GET", "/v1/users/credits")

    # The one place that talks HTTP

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict | None = None,
        params: dict | None = None,
        bearer: str | None = None,
        idempotent: bool = True,
    ):
        headers = {"Accept": "application/json", "User-Agent": "avatar_site"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        else:
            headers["X-API-KEY"] = self._api_key
        http = await self._http()
        attempt = 0
        while True:
            error = await self._attempt(http, method, path, headers, json, params)
            if not isinstance(error, LiveAvatarError):
                return error
            await failures.record(method, path, error)
            delay = self._retry_delay(error, attempt, idempotent)
            if delay is None:
                raise error
            attempt += 1
            logger.warning("LiveAvatar %s %s failed (%s); retry %d in %.2fs", method, path, error, attempt, delay)
            await asyncio.sleep(delay)

    async def _http(self) -> httpx.AsyncClient:
        """The pooled AsyncClient of this configuration on the running loop (the key is not part of it)."""
        timeout = self.timeout
        key = (self.base_url, timeout.connect, timeout.read, timeout.write, timeout.pool, self.transport)

        def build():
            if self.transport is not None:
                return httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=self.transport)
            return httpx.AsyncClient(base_url=self.base_url, timeout=timeout, verify=_shared_ssl_context())

        return await _pooled_http(key, build)

    async def _attempt(self, http, method, path, headers, json, params):
        """One HTTP exchange: the unwrapped data on success, else the LiveAvatarError (not raised)."""
        started = time.perf_counter()
        try:
            response = await http.request(method, path, headers=headers, json=json, params=params)
        except httpx.TimeoutException as exc:
            metrics.liveavatar_call(method, path, "timeout", time.perf_counter() - started, None)
            return LiveAvatarError(
                f"LiveAvatar did not answer in time: {type(exc).__name__}",
                kind="timeout",
                sent=not isinstance(exc, httpx.ConnectTimeout),
            )
        except httpx.TransportError as exc:
            metrics.liveavatar_call(method, path, "unreachable", time.perf_counter() - started, None)
            return LiveAvatarError(
                f"LiveAvatar unreachable: {type(exc).__name__}",
                kind="unavailable",
                sent=not isinstance(exc, httpx.ConnectError),
            )
        retry_after = None if response.is_success else _retry_after(response)
        metrics.liveavatar_call(method, path, response.status_code, time.perf_counter() - started, retry_after)
        if response.is_success:
            if not response.content:
                return None
            try:
                body = response.json()
            except ValueError:
                return LiveAvatarError(
                    "LiveAvatar answered with something that is not JSON",
                    kind="bad_response",
                    status=response.status_code,
                )
            if isinstance(body, dict) and "code" in body and "data" in body:
                return body["data"]
            return body
        message, code = _error_message(response)
        # An upstream that quotes our key back must not carry it into logs, rows and API answers.
        if self._api_key:
            message = message.replace(self._api_key, "[redacted]")
        return LiveAvatarError(
            message,
            kind=_kind_for(response.status_code, message),
            status=response.status_code,
            code=code,
            retry_after=retry_after,
        )

    def _retry_delay(self, error: LiveAvatarError, attempt: int, idempotent: bool) -> float | None:
        """Seconds to wait before trying again, or None to give up."""
        if attempt >= self.max_retries:
            return None
        if error.kind == "rate_limited":
            if error.retry_after is None:
                return BACKOFF_SECONDS * 2**attempt
            return error.retry_after if error.retry_after <= MAX_RETRY_AFTER_SECONDS else None
        if not error.sent:
            return BACKOFF_SECONDS * 2**attempt
        if idempotent and (error.kind in ("timeout", "unavailable")):
            return BACKOFF_SECONDS * 2**attempt
        return None


@functools.cache
def _transport(factory) -> httpx.AsyncBaseTransport:
    """The transport of settings.LIVEAVATAR_TRANSPORT (a function, or its dotted path), built once so
    that the calls through it share one connection pool per loop."""
    return (import_string(factory) if isinstance(factory, str) else factory)()


def get_client(**options) -> LiveAvatarClient:
    """The client for the configured backend: the real LiveAvatar, or the built-in emulator.

    The emulator gets its own key (settings.EMULATOR_API_KEY), so the real key only ever goes to
    LiveAvatar. The calls go through settings.LIVEAVATAR_TRANSPORT when it is set (the emulator in
    process, a test's stand-in for LiveAvatar), else over the network. `options` (timeout,
    max_retries) go to the client.
    """
    if not settings.LIVEAVATAR_EMULATOR:
        base_url, key = settings.LIVEAVATAR_API_URL, settings.LIVEAVATAR_API_KEY
    elif settings.LIVEAVATAR_EMULATOR_URL:
        base_url, key = settings.LIVEAVATAR_EMULATOR_URL, settings.EMULATOR_API_KEY
    else:
        base_url, key = EMULATOR_BASE_URL, settings.EMULATOR_API_KEY
    transport = _transport(settings.LIVEAVATAR_TRANSPORT) if settings.LIVEAVATAR_TRANSPORT else None
    return LiveAvatarClient(base_url, key, transport=transport, **options)
