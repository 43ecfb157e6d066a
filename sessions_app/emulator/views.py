"""REST side of the emulated LiveAvatar API (API.md §2, §7): same paths, envelope, auth split and refusals."""

import json
import math
import secrets
import uuid
from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from livekit.api import AccessToken, VideoGrants

from . import agent
from .models import EmulatedSession
from .room import notify_stopped
from .signaling import room_claims

END_REASONS = {
    "UNKNOWN",
    "USER_DISCONNECTED",
    "SERVER_ERROR",
    "IDLE_TIMEOUT",
    "NO_CREDITS",
    "USER_CLOSED",
    "AVATAR_DELETED",
    "MAX_DURATION_REACHED",
    "ZOMBIE_SESSION_REAP",
    "AGENT_HANG_UP",
}
INTERACTIVITY_TYPES = {"CONVERSATIONAL", "PUSH_TO_TALK"}


class Refused(Exception):
    def __init__(self, status: int, code: int, message: str):
        self.status, self.code, self.message = status, code, message


def _invalid(detail: str) -> Refused:
    return Refused(422, 4000, f"Request validation errors. {detail}")


def _ok(data=None, status=200):
    return JsonResponse({"code": 1000, "data": data, "message": "Success"}, status=status, safe=False)


def endpoint(*methods):
    """An emulated endpoint: CSRF-free (it is an API), method-checked, refusals in the envelope."""

    def decorate(view):
        @csrf_exempt
        @require_http_methods(list(methods))
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            try:
                return view(request, *args, **kwargs)
            except Refused as refusal:
                body = {"code": refusal.code, "data": None, "message": refusal.message}
                return JsonResponse(body, status=refusal.status)

        return wrapper

    return decorate


# Authentication


def _bearer(request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _require_api_key(request):
    key = request.headers.get("X-API-KEY")
    if not key:
        raise Refused(403, 4003, "Not authenticated")
    if not secrets.compare_digest(key, settings.EMULATOR_API_KEY):
        raise Refused(401, 4001, "Invalid API key")


def _session_by_token(token: str) -> EmulatedSession:
    session = EmulatedSession.for_token(token)
    if session is None:
        raise Refused(401, 4001, "Invalid session token")
    return _fresh(session)


def _session_by_id(session_id) -> EmulatedSession:
    try:
        session_id = uuid.UUID(str(session_id))
    except ValueError:
        raise _invalid("session_id: Input should be a valid UUID") from None
    session = EmulatedSession.objects.filter(id=session_id).first()
    if session is None:
        raise Refused(404, 4004, "Session not found")
    return _fresh(session)


def _either_auth(request, body: dict) -> EmulatedSession:
    """Stop and keep-alive: the session token names the session; with the API key, the body does."""
    token = _bearer(request)
    if token:
        return _session_by_token(token)
    _require_api_key(request)
    if not body.get("session_id"):
        raise _invalid("body.session_id: Field required")
    return _session_by_id(body["session_id"])


def _fresh(session: EmulatedSession) -> EmulatedSession:
    """Apply deadlines lazily: every read may be the moment a session times out."""
    if session.end_if_due():
        notify_stopped(session.id, session.end_reason)
    return session


def _json_body(request) -> dict:
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except ValueError:
        raise _invalid("body: JSON decode error") from None
    if not isinstance(body, dict):
        raise _invalid("body: Input should be a valid dictionary")
    return body


def _page(request, items: list) -> dict:
    try:
        page = max(1, int(request.GET.get("page", 1)))
        page_size = min(100, max(1, int(request.GET.get("page_size", 20))))
    except ValueError:
        raise _invalid("query.page: Input should be a valid integer") from None
    paginator = Paginator(items, page_size)
    results = list(paginator.page(page).object_list) if page <= paginator.num_pages else []
    return {
        "count": paginator.count,
        "next": None if page >= paginator.num_pages else f"?page={page + 1}",
        "previous": None if page == 1 else f"?page={page - 1}",
        "results": results,
    }


# Sessions


def _validate_token_config(body: dict) -> dict:
    if body.get("mode") not in ("FULL", "LITE"):
        raise _invalid("body: Unable to extract tag using discriminator 'mode'")
    if body["mode"] == "LITE":
        raise _invalid("body.LITE: the emulator only serves FULL mode")
    try:
        uuid.UUID(str(body["avatar_id"]))
    except KeyError:
        raise _invalid("body.FULL.avatar_id: Field required") from None
    except ValueError:
        raise _invalid("body.FULL.avatar_id: Input should be a valid UUID") from None
    if ("avatar_persona" in body) == ("voice_agent" in body):
        raise _invalid("body.FULL: Provide exactly one of avatar_persona or voice_agent")
    if body.get("interactivity_type", "CONVERSATIONAL") not in INTERACTIVITY_TYPES:
        raise _invalid("body.FULL.interactivity_type: Input should be 'CONVERSATIONAL' or 'PUSH_TO_TALK'")
    duration = body.get("max_session_duration")
    if duration is not None and (not isinstance(duration, int) or isinstance(duration, bool) or duration <= 0):
        raise _invalid("body.FULL.max_session_duration: Input should be a positive integer")
    if body.get("is_sandbox") and body["avatar_id"] != agent.SANDBOX_AVATAR_ID:
        raise _invalid("body.FULL.avatar_id: sandbox sessions can only use the sandbox avatar")
    return body


@endpoint("POST")
def create_token(request):
    _require_api_key(request)
    config = _validate_token_config(_json_body(request))
    session = EmulatedSession.objects.create(config=config, max_session_duration=config.get("max_session_duration"))
    return _ok({"session_id": str(session.id), "session_token": session.session_token})


def _room_token(session: EmulatedSession) -> str:
    return (
        AccessToken(settings.EMULATOR_LIVEKIT_API_KEY, settings.EMULATOR_LIVEKIT_API_SECRET)
        .with_identity(f"visitor-{str(session.id)[:8]}")
        .with_name("Visitor")
        .with_grants(VideoGrants(room_join=True, room=str(session.id)))
        .with_ttl(timedelta(hours=6))
        .to_jwt()
    )


@endpoint("POST")
def start(request):
    token = _bearer(request)
    if token is None:  # an API key is not enough here, exactly as on the real service
        raise Refused(403, 4003, "Not authenticated")
    session = _session_by_token(token)
    if session.status == EmulatedSession.ENDED:
        raise Refused(400, 4000, "Session has already ended")
    if session.status == EmulatedSession.CREATED:
        session.status = EmulatedSession.STARTED
        session.started_at = session.last_activity_at = session.updated_at = timezone.now()
        session.save(update_fields=["status", "started_at", "last_activity_at", "updated_at"])
    scheme = "wss" if request.is_secure() else "ws"
    # The seconds this session really lasts (its deadline runs at EMULATOR_SPEED), so that the page
    # counts down what will happen; whole seconds, as the API's integer, rounded up.
    duration = session.effective_max_duration
    return _ok(
        {
            "session_id": str(session.id),
            "livekit_url": settings.EMULATOR_LIVEKIT_URL or f"{scheme}://{request.get_host()}/liveavatar-emulator",
            "livekit_client_token": _room_token(session),
            "max_session_duration": duration and math.ceil(duration / settings.EMULATOR_SPEED),
        },
        status=201,
    )


@require_http_methods(["GET"])
def rtc_validate(request):
    """As a LiveKit server: 200 for a token that may join its room, 401 with the reason otherwise."""
    claims = room_claims(request.GET.get("access_token", ""))
    if claims is None:
        return HttpResponse("invalid or expired access token", status=401, content_type="text/plain")
    try:
        session = EmulatedSession.objects.filter(id=uuid.UUID(claims.video.room)).first()
    except ValueError:
        session = None
    if session is None or session.status != EmulatedSession.STARTED:
        # These words make livekit-client report "not allowed" instead of trying the older path.
        return HttpResponse("requested room does not exist", status=404, content_type="text/plain")
    return HttpResponse("success", content_type="text/plain")


@endpoint("POST")
def keep_alive(request):
    session = _either_auth(request, _json_body(request))
    if session.status == EmulatedSession.ENDED:
        raise Refused(400, 4000, "Session has already ended")
    session.touch()
    return _ok()


@endpoint("POST")
def stop(request):
    body = _json_body(request)
    reason = body.get("reason", "USER_CLOSED")
    if reason not in END_REASONS:
        raise _invalid("body.reason: Input should be a valid SessionEndReasonEnum")
    session = _either_auth(request, body)
    if session.status != EmulatedSession.ENDED:
        session.end(reason)
        notify_stopped(session.id, reason)
    return _ok()


@endpoint("GET")
def list_sessions(request):
    _require_api_key(request)
    kind = request.GET.get("type")
    if kind not in ("active", "historic"):
        raise _invalid("query.type: Field required (active or historic)")
    for session in EmulatedSession.objects.exclude(status=EmulatedSession.ENDED):
        _fresh(session)
    sessions = EmulatedSession.objects.all()
    if kind == "active":
        sessions = sessions.exclude(status=EmulatedSession.ENDED)
    else:
        sessions = sessions.filter(status=EmulatedSession.ENDED)
    return _ok(_page(request, [s.to_entry() for s in sessions]))


@endpoint("GET")
def session_detail(request, session_id):
    _require_api_key(request)
    return _ok(_session_by_id(session_id).to_entry())


@endpoint("GET")
def transcript(request, session_id):
    _require_api_key(request)
    session = _session_by_id(session_id)
    try:
        since = int(request.GET.get("start_timestamp", 0))
        until = int(request.GET["end_timestamp"]) if "end_timestamp" in request.GET else None
    except ValueError:
        raise _invalid("query.start_timestamp: Input should be a valid integer") from None
    entries = [
        e
        for e in session.transcript
        if e["absolute_timestamp"] >= since and (until is None or e["absolute_timestamp"] <= until)
    ]
    data = {"session_active": session.status != EmulatedSession.ENDED, "transcript_data": entries}
    if entries:
        data["next_timestamp"] = entries[-1]["absolute_timestamp"] + 1
    return _ok(data)


@endpoint("DELETE")
def delete_events(request, session_id):
    """Hard-delete what the service stored of a session: here, its transcript."""
    _require_api_key(request)
    session = _session_by_id(session_id)
    session.transcript = []
    session.save(update_fields=["transcript"])
    return _ok()


# Account resources


@endpoint("GET")
def avatars(request):
    _require_api_key(request)
    return _ok(_page(request, agent.AVATARS))


@endpoint("GET")
def public_avatars(request):
    return _ok(_page(request, agent.AVATARS))


@endpoint("GET")
def voices(request):
    _require_api_key(request)
    return _ok(_page(request, agent.VOICES))


@endpoint("GET")
def contexts(request):
    _require_api_key(request)
    keys = ("id", "name", "created_at", "updated_at")
    return _ok(_page(request, [{k: c[k] for k in keys} for c in agent.CONTEXTS]))


@endpoint("GET")
def context_detail(request, context_id):
    _require_api_key(request)
    context = next((c for c in agent.CONTEXTS if c["id"] == str(context_id)), None)
    if context is None:
        raise Refused(404, 4004, "Context not found")
    return _ok(context)


@endpoint("GET")
def voice_agents(request):
    _require_api_key(request)
    return _ok(_page(request, agent.VOICE_AGENTS))


@endpoint("GET")
def voice_agent_detail(request, agent_id):
    _require_api_key(request)
    found = next((a for a in agent.VOICE_AGENTS if a["id"] == str(agent_id)), None)
    if found is None:
        raise Refused(404, 4004, "Voice agent not found")
    return _ok(found)


@endpoint("GET")
def languages(request):
    return _ok(agent.LANGUAGES)


@endpoint("GET")
def credits(request):
    _require_api_key(request)
    used = sum(session.credits_consumed for session in EmulatedSession.objects.exclude(started_at=None))
    return _ok({"credits_left": f"{settings.EMULATOR_CREDITS - used:.2f}"})
