import json
import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST, require_safe

from operations import logs, metrics
from profiles import embedding
from profiles.models import AvatarProfile

from . import credentials, dashboard, feed, ingest, lifecycle, protocol
from .liveavatar import LiveAvatarError
from .minting import visitor_config
from .models import AvatarSession

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


@require_GET
async def index(request, slug: str | None = None):
    """A profile's visitor page (`/` is the default profile's) with a new session's token, or the words
    saying why there is none. Framed by another site, it mints only when the visitor starts: only the
    profile's allowed origins may frame it (CSP frame-ancestors), so only they lead to a token."""
    profile = await embedding.page_profile(slug)
    visitor_key, new_visitor = _visitor_key(request)
    framed = request.headers.get("Sec-Fetch-Dest") in ("iframe", "frame")
    auto_start = "auto_start" in request.GET
    if framed:
        config, status = embedding.deferred_config(profile, visitor_key, auto_start=auto_start), 200
    else:
        config, status = await visitor_config(request, visitor_key, profile=profile, auto_start=auto_start)
        config |= embedding.page_fields(profile, visitor_key)
    # The page's "Start a new conversation" form carries the CSRF token (and sets its cookie).
    response = render(request, "sessions_app/index.html", {"config": config, "profile": profile}, status=status)
    embedding.allow_framing(response, profile)
    return _remember_visitor(response, visitor_key, new_visitor)


@require_POST
async def new_session(request):
    """ "Start a new conversation" without a reload: the same page config, as JSON (CSRF-protected)."""
    visitor_key, new = _visitor_key(request)
    config, status = await visitor_config(request, visitor_key, auto_start=True)
    return _remember_visitor(JsonResponse(config, status=status), visitor_key, new)


# Event beacon and staff dashboard.

# Beacon rate limits, per session and per process. Cleared when it grows large: a reset only forgives.
_beacon_buckets: dict[str, protocol.TokenBucket] = {}


def _ingest_error(code: str, message: str, status: int) -> JsonResponse:
    metrics.EVENTS_REJECTED.labels(code).inc()
    return JsonResponse({"error": code, "message": message}, status=status)


@csrf_exempt  # the credential is the authority, and sendBeacon cannot send a CSRF token
@require_POST
async def session_events(request, session_id):
    """The forwarding protocol over HTTP: navigator.sendBeacon on page close, and API clients."""
    logs.bind_session(session_id)
    if not credentials.verify(request.GET.get("credential", ""), session_id):
        return _ingest_error("bad_credential", "Missing, expired or foreign credential.", 401)
    session = await AvatarSession.objects.select_related("profile").filter(pk=session_id).afirst()
    if session is None:
        return _ingest_error("not_found", "No such session.", 404)
    if int(request.META.get("CONTENT_LENGTH") or 0) > settings.INGEST_MAX_MESSAGE_BYTES:
        return _ingest_error("too_large", f"The limit is {settings.INGEST_MAX_MESSAGE_BYTES} bytes.", 413)
    if len(_beacon_buckets) > 10_000:
        _beacon_buckets.clear()
    bucket = _beacon_buckets.setdefault(
        str(session_id), protocol.TokenBucket(settings.INGEST_RATE_PER_SECOND, settings.INGEST_RATE_BURST)
    )
    try:
        items = protocol.parse_message(request.body)
        if not bucket.take(max(1, len(items))):
            return _ingest_error("rate_limited", "Too many events; send them again later.", 429)
        result = await ingest.store_batch(session, items)
    except protocol.IngestError as exc:
        return _ingest_error(exc.code, exc.message, exc.http_status)
    metrics.rejected(result.errors)
    return JsonResponse({"acked": result.acked, "errors": result.errors})


# Server-started sessions: the page's start, keep-alive and stop, made here with the credential.

# The reasons a page may give LiveAvatar when it stops (its SessionEndReasonEnum's page-side ones).
PAGE_STOP_REASONS = {"USER_CLOSED", "USER_DISCONNECTED"}


async def _page_session(request, session_id) -> AvatarSession | JsonResponse:
    if not credentials.verify(request.GET.get("credential", ""), session_id):
        return _ingest_error("bad_credential", "Missing, expired or foreign credential.", 401)
    session = await AvatarSession.objects.filter(pk=session_id).afirst()
    if session is None:
        return _ingest_error("not_found", "No such session.", 404)
    return session


def _liveavatar_failed(exc: LiveAvatarError) -> JsonResponse:
    return _ingest_error("liveavatar_failed", exc.visitor_message, 504 if exc.kind == "timeout" else 502)


@csrf_exempt  # the credential is the authority, as for the events
@require_POST
async def session_start(request, session_id):
    session = await _page_session(request, session_id)
    if isinstance(session, JsonResponse):
        return session
    try:
        started = await lifecycle.start_for_page(session)
    except lifecycle.NotStartable:
        return _ingest_error("conflict", "This conversation was started already.", 409)
    except LiveAvatarError as exc:
        return _liveavatar_failed(exc)
    if settings.LIVEAVATAR_EMULATOR and started["livekit_url"]:
        # The emulator in process answered for the address the server called it at; the page
        # reaches its room at the page's own.
        room = urlsplit(started["livekit_url"])
        scheme = "wss" if request.is_secure() else "ws"
        started["livekit_url"] = f"{scheme}://{request.get_host()}{room.path}"
    return JsonResponse(started)


@csrf_exempt
@require_POST
async def session_keep_alive(request, session_id):
    session = await _page_session(request, session_id)
    if isinstance(session, JsonResponse):
        return session
    try:
        await lifecycle.keep_alive_for_page(session)
    except LiveAvatarError as exc:
        return _liveavatar_failed(exc)
    return JsonResponse({})


@csrf_exempt  # also sent with fetch keepalive while the page closes
@require_POST
async def session_stop(request, session_id):
    session = await _page_session(request, session_id)
    if isinstance(session, JsonResponse):
        return session
    try:
        reason = json.loads(request.body or b"{}").get("reason", "USER_CLOSED")
    except (ValueError, AttributeError):
        reason = None
    if reason not in PAGE_STOP_REASONS:
        return _ingest_error("bad_request", f"reason must be one of {', '.join(sorted(PAGE_STOP_REASONS))}.", 400)
    try:
        await lifecycle.stop_for_page(session, reason)
    except LiveAvatarError as exc:
        return _liveavatar_failed(exc)
    return JsonResponse({})


def _dashboard_profile(request) -> AvatarProfile | None:
    """The profile the dashboard is narrowed to (?profile=<slug>), or None for all."""
    slug = request.GET.get("profile")
    return AvatarProfile.objects.filter(slug=slug).first() if slug else None


@staff_member_required
def dashboard_page(request):
    profile = _dashboard_profile(request)
    data = {
        "figures": dashboard.figures(profile=profile),
        "recent": dashboard.recent_sessions(profile=profile),
        "budgets": dashboard.budget_usage(),
        "site_max_live_sessions": settings.MAX_LIVE_SESSIONS or None,
        "profile": profile.slug if profile else "",
        "feed_path": "/ws/dashboard/",
        "figures_path": reverse("sessions_app:dashboard_figures"),
        "time_zone": settings.TIME_ZONE,
        # Live control from the cards, for staff allowed to (the API checks again).
        "can_control": request.user.has_perm("sessions_app.control_session"),
        "commands_path": reverse("api:send_command", args=[feed.ANY_SESSION]),
        "max_text": settings.CONTROL_MAX_TEXT_CHARS,
        "csrf_token": get_token(request),
    }
    return render(request, "sessions_app/dashboard.html", {"data": data})


@staff_member_required
def dashboard_figures(request):
    """The figures, recent sessions and budgets again: the dashboard fetches them when a session starts
    or ends, or when staff pick another profile."""
    profile = _dashboard_profile(request)
    return JsonResponse(
        {
            "figures": dashboard.figures(profile=profile),
            "recent": dashboard.recent_sessions(profile=profile),
            "budgets": dashboard.budget_usage(),
        }
    )


@require_safe
def favicon(request):
    """For browsers and tools that ask for /favicon.ico without reading the page's <link rel="icon">."""
    return redirect(static("img/favicon.svg"), permanent=True)
