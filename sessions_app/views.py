import asyncio
import logging
import secrets

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import json_script
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST, require_safe

from . import credentials, dashboard, ingest
from .minting import MintError, MintRateLimited, error_config, mint_session, page_config
from .models import AvatarSession

log = logging.getLogger(__name__)

# Seconds the health check waits for a channel-layer round trip.
HEALTH_LAYER_TIMEOUT = 2.0


# Anonymous visitors are known by a random id in a signed cookie, not by a Django session: a session
# would cost a database INSERT (and an UPDATE) on every first visit just to obtain a key. Staff still
# log in with Django sessions (admin, dashboard).
VISITOR_COOKIE = "avatar_visitor"
VISITOR_COOKIE_SALT = "sessions_app.visitor"


def _visitor_key(request) -> tuple[str, bool]:
    """(the visitor's key, whether it is new and the response must set the cookie)."""
    key = request.get_signed_cookie(
        VISITOR_COOKIE, default=None, salt=VISITOR_COOKIE_SALT, max_age=settings.SESSION_COOKIE_AGE
    )
    if key:
        return key, False
    return "v:" + secrets.token_urlsafe(24), True


def _remember_visitor(response, key: str, new: bool):
    if new:
        response.set_signed_cookie(
            VISITOR_COOKIE,
            key,
            salt=VISITOR_COOKIE_SALT,
            max_age=settings.SESSION_COOKIE_AGE,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )
    return response


def _failure(exc: MintRateLimited | MintError) -> tuple[str, int]:
    """What to tell a visitor whose session could not be minted, and the HTTP status."""
    if isinstance(exc, MintRateLimited):
        return exc.message, 429
    return exc.error.visitor_message, 503


class _SavesLiveAvatarIdWhenSent(HttpResponse):
    """A visitor page that records LiveAvatar's id of its session once the page has been sent
    (Django closes a response after sending it, on the request's thread), so that database write is
    not on the visitor's wait. The session's row was stored before LiveAvatar answered.

    Should the process die in the millisecond between, the row lacks LiveAvatar's id: the page still
    runs and stops its session itself, its events are still stored, and LiveAvatar ends the session
    at its max_session_duration; only a stop from the server and the transcript check against
    LiveAvatar's are not possible for it. A database error here is logged.
    """

    def __init__(self, *, session: AvatarSession):
        super().__init__()
        self.session = session

    def close(self):
        try:
            self.session.save(update_fields=["liveavatar_session_id"])
        except DatabaseError:
            log.exception(
                "Could not record LiveAvatar's id %s of session %s", self.session.liveavatar_session_id, self.session.pk
            )
        finally:
            super().close()


class VisitorPage:
    """The visitor page of a new session, built while LiveAvatar mints its token.

    The wait for LiveAvatar is idle time, and what runs after its answer is what the visitor waits
    for: so the page (template, config, response and its cookie) is built in the wait, and only the
    token and LiveAvatar's session id are filled in after it. The page is the one `render` would
    make of the full config.
    """

    template = "sessions_app/index.html"

    def __init__(self, request, visitor_key: str, new_visitor: bool, *, auto_start: bool):
        self.request, self.visitor_key, self.new_visitor, self.auto_start = (
            request,
            visitor_key,
            new_visitor,
            auto_start,
        )
        self.response = None

    def prepare(self, session: AvatarSession) -> None:
        """Build the page with everything but the token (called while LiveAvatar mints)."""
        config = page_config(self.request, session, "", auto_start=self.auto_start)
        html = render_to_string(self.template, {"config": config}, self.request)
        response = _remember_visitor(_SavesLiveAvatarIdWhenSent(session=session), self.visitor_key, self.new_visitor)
        self.config, self.html, self.config_script, self.response = (
            config,
            html,
            json_script(config, "avatar-config"),
            response,
        )

    def minted(self, session: AvatarSession, token: str) -> HttpResponse:
        if self.response is None:  # no wait to use (the emulator in process answers at once)
            self.prepare(session)
        config = {**self.config, "session_token": token, "liveavatar_session_id": session.liveavatar_session_id}
        self.response.content = self.html.replace(self.config_script, json_script(config, "avatar-config"), 1)
        return self.response

    def failed(self, message: str, status: int) -> HttpResponse:
        response = render(self.request, self.template, {"config": error_config(message)}, status=status)
        return _remember_visitor(response, self.visitor_key, self.new_visitor)


@require_GET
async def index(request):
    get_token(request)  # sets the CSRF cookie that "Start a new conversation" (POST) needs
    page = VisitorPage(request, *_visitor_key(request), auto_start="auto_start" in request.GET)
    try:
        session, token = await mint_session(
            visitor_key=page.visitor_key,
            client_address=request.META.get("REMOTE_ADDR", ""),
            while_waiting=page.prepare,
            defer_liveavatar_id=True,
        )
    except (MintRateLimited, MintError) as exc:
        return page.failed(*_failure(exc))
    return page.minted(session, token)


@require_POST
async def new_session(request):
    """ "Start a new conversation" without a reload: the same page config, as JSON (CSRF-protected)."""
    visitor_key, new = _visitor_key(request)
    try:
        session, token = await mint_session(visitor_key=visitor_key, client_address=request.META.get("REMOTE_ADDR", ""))
    except (MintRateLimited, MintError) as exc:
        message, status = _failure(exc)
        response = JsonResponse(error_config(message), status=status)
    else:
        response = JsonResponse(page_config(request, session, token, auto_start=True))
    return _remember_visitor(response, visitor_key, new)


# Health probes: whatever the failure (refused, timeout, misconfigured), the part is down.
def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


async def _channel_layer_ok() -> bool:
    try:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await asyncio.wait_for(layer.send(channel, {"type": "health.ping"}), HEALTH_LAYER_TIMEOUT)
        await asyncio.wait_for(layer.receive(channel), HEALTH_LAYER_TIMEOUT)
        return True
    except Exception:
        return False


@require_safe  # load balancers and uptime checks often probe with HEAD
async def healthz(request):
    database = await sync_to_async(_database_ok)()
    layer = await _channel_layer_ok()
    body = {
        "database": "ok" if database else "down",
        "channel_layer": "ok" if layer else "down",
        "liveavatar": "emulator" if settings.LIVEAVATAR_EMULATOR else "real",
    }
    return JsonResponse(body, status=200 if database and layer else 503)


# Event beacon and staff dashboard (issue 4).

# Beacon rate limits, per session and per process. Cleared when it grows large: a reset only forgives.
_beacon_buckets: dict[str, ingest.TokenBucket] = {}


def _ingest_error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


@csrf_exempt  # the credential is the authority, and sendBeacon cannot send a CSRF token
@require_POST
async def session_events(request, session_id):
    """The forwarding protocol over HTTP: navigator.sendBeacon on page close, and API clients."""
    if not credentials.verify(request.GET.get("credential", ""), session_id):
        return _ingest_error("bad_credential", "Missing, expired or foreign credential.", 401)
    session = await AvatarSession.objects.filter(pk=session_id).afirst()
    if session is None:
        return _ingest_error("not_found", "No such session.", 404)
    if int(request.META.get("CONTENT_LENGTH") or 0) > settings.INGEST_MAX_MESSAGE_BYTES:
        return _ingest_error("too_large", f"The limit is {settings.INGEST_MAX_MESSAGE_BYTES} bytes.", 413)
    if len(_beacon_buckets) > 10_000:
        _beacon_buckets.clear()
    bucket = _beacon_buckets.setdefault(
        str(session_id), ingest.TokenBucket(settings.INGEST_RATE_PER_SECOND, settings.INGEST_RATE_BURST)
    )
    try:
        items = ingest.parse_message(request.body)
        if not bucket.take(max(1, len(items))):
            return _ingest_error("rate_limited", "Too many events; send them again later.", 429)
        result = await ingest.store_batch(session, items)
    except ingest.IngestError as exc:
        return _ingest_error(exc.code, exc.message, exc.http_status)
    return JsonResponse({"acked": result.acked, "errors": result.errors})


@staff_member_required
def dashboard_page(request):
    data = {
        "figures": dashboard.figures(),
        "recent": dashboard.recent_sessions(),
        "feed_path": "/ws/dashboard/",
        "figures_path": reverse("sessions_app:dashboard_figures"),
        "time_zone": settings.TIME_ZONE,
    }
    return render(request, "sessions_app/dashboard.html", {"data": data})


@staff_member_required
def dashboard_figures(request):
    """The figures and recent sessions again: the dashboard fetches them when a session starts or ends."""
    return JsonResponse({"figures": dashboard.figures(), "recent": dashboard.recent_sessions()})


@require_safe
def favicon(request):
    """For browsers and tools that ask for /favicon.ico without reading the page's <link rel="icon">."""
    return redirect(static("img/favicon.svg"), permanent=True)
