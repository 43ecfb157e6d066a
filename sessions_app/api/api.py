"""The REST API under /api/v1/: the NinjaAPI, its JSON error bodies and the session endpoints.

Every error is `{"error": code, "message": words}` with an exact status code, and every status an
operation can answer is declared, so the generated OpenAPI document is the whole truth.
"""

import uuid
from typing import Literal

from django.db.models import Exists, OuterRef
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import NinjaAPI, Query, Status
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.pagination import paginate

from ..models import AvatarSession, TranscriptEntry
from . import formats
from .auth import READ, WRITE, requires
from .schemas import ErrorOut, EventOut, Pages, SessionFilters, SessionOut, TranscriptOut

ERROR_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "too_large", 422: "validation_error", 429: "throttled",
    502: "liveavatar_failed", 503: "server_busy", 504: "liveavatar_timeout",
}

api = NinjaAPI(
    title="avatar_site API",
    version="1",
    description="Mint LiveAvatar sessions, forward their events and read what the site stored. "
                "Authenticate with `Authorization: Bearer <API key>`.",
    urls_namespace="api",
)


def error(request, status: int, message: str, code: str | None = None) -> HttpResponse:
    return api.create_response(request, {"error": code or ERROR_CODES.get(status, "error"), "message": message}, status=status)


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


@api.exception_handler(Http404)
def on_not_found(request, exc):
    return error(request, 404, "No such session.")


@api.exception_handler(ValidationError)
def on_validation_error(request, exc: ValidationError):
    problems = [f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', e)}" for e in exc.errors]
    return error(request, 422, "; ".join(problems))


def _session(session_id: uuid.UUID) -> AvatarSession:
    return get_object_or_404(AvatarSession, pk=session_id)


@api.get("/sessions", response={200: list[SessionOut], **errors(*AUTH_ERRORS, 422)}, auth=requires(READ),
         tags=["sessions"], summary="List sessions, newest first")
@paginate(Pages)
def list_sessions(request, filters: Query[SessionFilters]):
    sessions = AvatarSession.objects.all()
    if filters.status:
        sessions = sessions.filter(status=filters.status)
    if filters.created_after:
        sessions = sessions.filter(created_at__gte=filters.created_after)
    if filters.created_before:
        sessions = sessions.filter(created_at__lt=filters.created_before)
    if filters.q:
        said = TranscriptEntry.objects.filter(session=OuterRef("pk"), text__icontains=filters.q)
        sessions = sessions.filter(Exists(said))
    return sessions


@api.get("/sessions/{session_id}", response={200: SessionOut, **errors(*AUTH_ERRORS, 404, 422)},
         auth=requires(READ), tags=["sessions"], summary="One session")
def get_session(request, session_id: uuid.UUID):
    return _session(session_id)


TRANSCRIPT_MEDIA = {"text": "text/plain; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


@api.get("/sessions/{session_id}/transcript", response={200: TranscriptOut, **errors(*AUTH_ERRORS, 404, 422)},
         auth=requires(READ), tags=["sessions"], summary="A session's transcript as JSON, plain text or WebVTT",
         openapi_extra={"responses": {200: {"content": {
             "text/plain": {"schema": {"type": "string"}}, "text/vtt": {"schema": {"type": "string"}}}}}})
def get_transcript(request, session_id: uuid.UUID, format: Literal["json", "text", "vtt"] = "json"):
    session = _session(session_id)
    entries = session.transcript.all()
    if format == "json":
        return {"session_id": session.id, "entries": entries}
    if format == "text":
        body = formats.as_text(entries)
    else:
        first = entries.first()
        start = session.started_at or (first and first.started_at) or session.created_at
        body = formats.as_vtt(entries, start)
    return HttpResponse(body, content_type=TRANSCRIPT_MEDIA[format])


@api.get("/sessions/{session_id}/events", response={200: list[EventOut], **errors(*AUTH_ERRORS, 404, 422)},
         auth=requires(READ), tags=["events"], summary="A session's stored events in page order (seq)")
@paginate(Pages)
def list_events(request, session_id: uuid.UUID):
    return _session(session_id).events.order_by("seq")


@api.delete("/sessions/{session_id}", response={204: None, **errors(*AUTH_ERRORS, 404, 409, 422)},
            auth=requires(WRITE), tags=["sessions"], summary="Delete a session with its events and transcript")
def delete_session(request, session_id: uuid.UUID):
    session = _session(session_id)
    if session.is_live:
        # Deleting it would leave a LiveAvatar session running (and billed) that nothing tracks.
        raise HttpError(409, f"The session is {session.status}: stop it first.")
    session.delete()
    return Status(204, None)
