"""The REST API under /api/v1/: the NinjaAPI, its JSON error bodies and the session endpoints.

Every error is `{"error": code, "message": words}` with an exact status code, and every status an
operation can answer is declared, so the generated OpenAPI document is the whole truth.
"""

import uuid
from typing import Literal

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db.models import Exists, OuterRef
from django.http import Http404, HttpResponse
from django.shortcuts import aget_object_or_404, get_object_or_404
from ninja import NinjaAPI, Query, Status, Swagger
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.pagination import paginate
from ninja.parser import Parser

from control.api import router as control_router
from operations import logs, metrics
from profiles import embedding
from profiles.api import router as profiles_router

from .. import exports, ingest, lifecycle, minting, protocol, transcript_rows
from ..liveavatar import LiveAvatarError
from ..models import ApiKey, AvatarSession, CreatedVia, EndReason, TranscriptEntry
from ..schemas import EventOut, SessionOut
from .auth import READ, WRITE, caller, requires
from .schemas import (
    ErrorOut,
    EventBatchIn,
    EventBatchOut,
    Pages,
    SessionCreatedOut,
    SessionCreateIn,
    SessionFilters,
    TranscriptOut,
)

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "validation_error",
    429: "throttled",
    502: "liveavatar_failed",
    503: "server_busy",
    504: "liveavatar_timeout",
}


class OneValueParser(Parser):
    """A query parameter given twice (`?q=a&q=b`) is refused with 422 like any other value its schema
    does not allow; ninja would silently take the last one."""

    def parse_querydict(self, data, list_fields, request):
        result = super().parse_querydict(data, list_fields, request)
        for key in data:
            if key not in list_fields and len(data.getlist(key)) > 1:
                result[key] = data.getlist(key)
        return result


api = NinjaAPI(
    title="avatar_site API",
    version="1",
    description="Mint LiveAvatar sessions, forward their events and read what the site stored. "
    "Authenticate with `Authorization: Bearer <API key>`.",
    urls_namespace="api",
    parser=OneValueParser(),
    # Swagger UI from ninja's static files (no CDN); no validator badge, which would load from swagger.io.
    docs=Swagger(settings={"validatorUrl": None}),
)


def error(request, status: int, message: str, code: str | None = None) -> HttpResponse:
    body = {"error": code or ERROR_CODES.get(status, "error"), "message": message}
    return api.create_response(request, body, status=status)


def errors(*codes: int) -> dict:
    """The error part of an operation's `response=`: every one is an ErrorOut."""
    return {code: ErrorOut for code in codes}


# Every operation can meet these: no or bad credential, missing scope, throttled.
AUTH_ERRORS = (401, 403, 429)


@api.exception_handler(HttpError)
def on_http_error(request, exc: HttpError):
    if isinstance(exc, AuthenticationError):
        response = error(request, 401, "Send a valid API key: Authorization: Bearer <key>.")
        response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    response = error(request, exc.status_code, exc.message)
    if isinstance(exc, Throttled) and exc.wait:
        response["Retry-After"] = str(exc.wait)
    return response


@api.exception_handler(protocol.IngestError)
def on_ingest_error(request, exc: protocol.IngestError):
    # The forwarding protocol's own codes (too_large, bad_envelope, server_busy...), as on the websocket.
    metrics.EVENTS_REJECTED.labels(exc.code).inc()
    return error(request, exc.http_status, exc.message, exc.code)


@api.exception_handler(RequestDataTooBig)
def on_too_big(request, exc):
    return error(request, 413, f"The request body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes.")


@api.exception_handler(Http404)
def on_not_found(request, exc):
    return error(request, 404, "No such session.")


@api.exception_handler(ValidationError)
def on_validation_error(request, exc: ValidationError):
    problems = [f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', e)}" for e in exc.errors]
    return error(request, 422, "; ".join(problems))


def _session(session_id: uuid.UUID) -> AvatarSession:
    """The session, its transcript holding every event acknowledged so far."""
    transcript_rows.bring_up_to_date([session_id])
    return get_object_or_404(AvatarSession.objects.select_related("profile"), pk=session_id)


def _liveavatar_failed(exc: LiveAvatarError) -> HttpError:
    if exc.kind == "timeout":
        return HttpError(504, f"LiveAvatar did not answer in time: {exc}")
    return HttpError(502, f"LiveAvatar failed: {exc}")


# The API's names for the overrides minting accepts.
OVERRIDE_NAMES = {
    "language": "language",
    "sandbox": "is_sandbox",
    "interactivity": "interactivity_type",
    "max_session_duration": "max_session_duration",
}


@api.post(
    "/sessions",
    response={201: SessionCreatedOut, **errors(*AUTH_ERRORS, 400, 404, 422, 502, 504)},
    auth=requires(WRITE),
    tags=["sessions"],
    summary="Mint a LiveAvatar session token and record the session",
)
async def create_session(request, overrides: SessionCreateIn | None = None):
    chosen = overrides.model_dump(exclude_none=True) if overrides else {}
    try:
        profile = await embedding.page_profile(chosen.pop("profile", None))
    except Http404:
        raise HttpError(404, "No active profile has this slug.") from None
    try:
        session, token = await minting.mint_session(
            visitor_key=caller(request.auth),
            client_address=request.META.get("REMOTE_ADDR", ""),
            created_via=CreatedVia.API,
            overrides={OVERRIDE_NAMES[name]: value for name, value in chosen.items()},
            profile=profile,
        )
    except minting.MintRateLimited as exc:
        refused = Throttled(wait=exc.retry_after)
        refused.message = exc.message  # why, and when it resets
        raise refused from None
    except minting.MintError as exc:
        raise _liveavatar_failed(exc.error) from None
    page = minting.page_config(request, session, token)  # an API session: the browser-start shape
    scheme = "wss" if request.is_secure() else "ws"
    return Status(
        201,
        {
            "session_id": session.id,
            "liveavatar_session_id": session.liveavatar_session_id,
            "session_token": token,
            "liveavatar_api_url": page["liveavatar_api_url"],
            "events_url": f"{scheme}://{request.get_host()}{page['events_ws_url']}",
            "events_http_url": request.build_absolute_uri(page["events_http_url"]),
            "interactivity": session.interactivity,
            "max_session_duration": session.max_session_duration,
            "is_sandbox": session.is_sandbox,
        },
    )


@api.get(
    "/sessions",
    response={200: list[SessionOut], **errors(*AUTH_ERRORS, 422)},
    auth=requires(READ),
    tags=["sessions"],
    summary="List sessions, newest first",
)
@paginate(Pages)
def list_sessions(request, filters: Query[SessionFilters]):
    sessions = AvatarSession.objects.select_related("profile")
    if filters.profile:
        sessions = sessions.filter(profile__slug=filters.profile)
    if filters.status:
        sessions = sessions.filter(status=filters.status)
    if filters.created_after:
        sessions = sessions.filter(created_at__gte=filters.created_after)
    if filters.created_before:
        sessions = sessions.filter(created_at__lt=filters.created_before)
    # Sessions still being forwarded, newest first: as many as a page holds.
    transcript_rows.bring_up_to_date(sessions.transcript_behind().values_list("pk", flat=True)[: Pages.MAX_PAGE_SIZE])
    if filters.q:
        said = TranscriptEntry.objects.filter(session=OuterRef("pk"), text__icontains=filters.q)
        sessions = sessions.filter(Exists(said))
    return sessions


@api.get(
    "/sessions/{session_id}",
    response={200: SessionOut, **errors(*AUTH_ERRORS, 404, 422)},
    auth=requires(READ),
    tags=["sessions"],
    summary="One session",
)
def get_session(request, session_id: uuid.UUID):
    return _session(session_id)


TRANSCRIPT_MEDIA = {"text": "text/plain; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


@api.get(
    "/sessions/{session_id}/transcript",
    response={200: TranscriptOut, **errors(*AUTH_ERRORS, 404, 422)},
    auth=requires(READ),
    tags=["sessions"],
    summary="A session's transcript as JSON, plain text or WebVTT",
    openapi_extra={
        "responses": {
            200: {"content": {"text/plain": {"schema": {"type": "string"}}, "text/vtt": {"schema": {"type": "string"}}}}
        }
    },
)
def get_transcript(request, session_id: uuid.UUID, format: Literal["json", "text", "vtt"] = "json"):
    session = _session(session_id)
    entries = session.transcript.all()
    if format == "json":
        return {"session_id": session.id, "entries": entries}
    if format == "text":
        body = exports.as_text(entries)
    else:
        # Entry times are the page's clock (the events' ts): cues count from the page's clock at its
        # first event, which the server's own start may be far from.
        page_start = session.events.filter(client_ts__isnull=False).order_by("seq").values_list("client_ts", flat=True)
        first = entries.first()
        start = page_start.first() or session.started_at or (first and first.started_at) or session.created_at
        body = exports.as_vtt(entries, start)
    return HttpResponse(body, content_type=TRANSCRIPT_MEDIA[format])


@api.get(
    "/sessions/{session_id}/events",
    response={200: list[EventOut], **errors(*AUTH_ERRORS, 404, 422)},
    auth=requires(READ),
    tags=["events"],
    summary="A session's stored events in page order (seq)",
)
@paginate(Pages)
def list_events(request, session_id: uuid.UUID):
    return _session(session_id).events.order_by("seq")


@api.post(
    "/sessions/{session_id}/events",
    response={200: EventBatchOut, **errors(*AUTH_ERRORS, 400, 404, 413, 422, 503)},
    auth=requires(WRITE),
    tags=["events"],
    summary="Send a batch of events, as the page does on its websocket",
)
async def send_events(request, session_id: uuid.UUID, batch: EventBatchIn):
    logs.bind_session(session_id)
    session = await aget_object_or_404(AvatarSession.objects.select_related("profile"), pk=session_id)
    result = await ingest.store_batch(session, protocol.validate_envelope(batch.model_dump()))
    metrics.rejected(result.errors)
    return {"acked": result.acked, "errors": result.errors}


@api.post(
    "/sessions/{session_id}/stop",
    response={200: SessionOut, **errors(*AUTH_ERRORS, 404, 409, 422, 502, 504)},
    auth=requires(WRITE),
    tags=["sessions"],
    summary="Stop a live session at LiveAvatar and mark it ended",
)
async def stop_session(request, session_id: uuid.UUID):
    session = await aget_object_or_404(AvatarSession, pk=session_id)
    if not session.is_live:
        raise HttpError(409, f"The session is already {session.status}.")
    reason = EndReason.API_ENDED if isinstance(request.auth, ApiKey) else EndReason.STAFF_ENDED
    try:
        session = await lifecycle.stop_session(session, "USER_CLOSED", reason, ended_by=caller(request.auth))
    except LiveAvatarError as exc:
        raise _liveavatar_failed(exc) from None
    return await AvatarSession.objects.select_related("profile").aget(pk=session.pk)


@api.delete(
    "/sessions/{session_id}",
    response={204: None, **errors(*AUTH_ERRORS, 404, 409, 422)},
    auth=requires(WRITE),
    tags=["sessions"],
    summary="Delete a session with its events and transcript",
)
def delete_session(request, session_id: uuid.UUID):
    session = _session(session_id)
    if session.is_live:
        # Deleting it would leave a LiveAvatar session running (and billed) that nothing tracks.
        raise HttpError(409, f"The session is {session.status}: stop it first.")
    session.delete()
    return Status(204, None)


# Live control's operation lives with the rest of live control (control/api.py).
api.add_router("", control_router)
api.add_router("/profiles", profiles_router)
