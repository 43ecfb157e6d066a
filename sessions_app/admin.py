"""Staff review of sessions: list, filters, transcript search, the evidence page, exports, ending a live session.

Sessions, events and transcripts are evidence: nothing here edits them. Deleting a session deletes
its events and transcript (the foreign keys cascade).
"""

import csv
import io
import json

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse

from privacy.models import purge_date

from . import lifecycle
from .api import admin as api_admin  # noqa: F401  (registers ApiKey)
from .api.formats import as_text
from .liveavatar import LiveAvatarError
from .models import LIVE_STATUSES, AvatarSession

# The event timeline on a session page stops here; the JSON export has them all.
TIMELINE_LIMIT = 2000


def _export_name(sessions, extension: str) -> str:
    return f"session-{sessions[0].id}.{extension}" if len(sessions) == 1 else f"sessions.{extension}"


def _download(body: str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@admin.register(AvatarSession)
class AvatarSessionAdmin(admin.ModelAdmin):
    # Every column is a field of the session row (metrics are stored on it), so the list costs the
    # same few queries however many sessions there are.
    list_display = [
        "short_id",
        "status",
        "started_at",
        "duration",
        "turn_count",
        "median_latency_ms",
        "interruption_count",
        "end_reason",
        "purge_on",
    ]
    list_filter = ["status", ("created_at", admin.DateFieldListFilter), "avatar_id", "created_via"]
    search_fields = ["transcript__text", "=id", "=liveavatar_session_id", "end_reason"]
    date_hierarchy = "created_at"
    actions = ["export_json", "export_csv", "export_text", "end_live_session"]
    change_form_template = "admin/sessions_app/avatarsession/change_form.html"
    fieldsets = [
        (None, {"fields": ["id", "liveavatar_session_id", "status", "end_reason", "error"]}),
        ("Times", {"fields": ["created_at", "started_at", "ended_at", "last_event_at", "reconciled_at"]}),
        ("Metrics", {"fields": ["turn_count", "median_latency_ms", "avatar_speaking_ms", "interruption_count"]}),
        ("Privacy", {"fields": ["purge_on", "redacted"]}),
        (
            "Configuration",
            {
                "fields": [
                    "avatar_id",
                    "is_sandbox",
                    "interactivity",
                    "max_session_duration",
                    "created_via",
                    "visitor_key",
                    "open_connections",
                    "config",
                ]
            },
        ),
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # evidence: viewable, never edited

    @admin.display(description="Session", ordering="id")
    def short_id(self, session):
        return str(session.id)[:8]

    @admin.display(description="Purged on")
    def purge_on(self, session):
        return purge_date(session)

    @admin.display(description="Redacted in the transcript")
    def redacted(self, session):
        counts = getattr(getattr(session, "redactions", None), "counts", None)
        if counts is None:
            return "Counted when the session ends"
        return ", ".join(f"{kind}: {n}" for kind, n in sorted(counts.items())) or "Nothing"

    @admin.display(description="Duration")
    def duration(self, session):
        seconds = session.duration_seconds
        return "–" if seconds is None else f"{int(seconds) // 60}:{int(seconds) % 60:02}"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        session = self.get_object(request, object_id)
        if session is not None:
            extra_context = {
                **(extra_context or {}),
                "transcript": session.transcript.all(),
                "timeline": session.events.order_by("seq")[:TIMELINE_LIMIT],
                "timeline_total": session.events.count(),
                "timeline_limit": TIMELINE_LIMIT,
            }
        return super().change_view(request, object_id, form_url, extra_context)

    # Exports: one file for however many sessions are selected.

    def _with_records(self, queryset):
        return list(queryset.prefetch_related("transcript", "events").order_by("created_at"))

    @admin.action(description="Export selected sessions as JSON (transcript and events)")
    def export_json(self, request, queryset):
        sessions = self._with_records(queryset)
        data = [
            {
                "id": s.id,
                "liveavatar_session_id": s.liveavatar_session_id,
                "status": s.status,
                "end_reason": s.end_reason,
                "error": s.error,
                "avatar_id": s.avatar_id,
                "created_at": s.created_at,
                "started_at": s.started_at,
                "ended_at": s.ended_at,
                "duration_seconds": s.duration_seconds,
                "turn_count": s.turn_count,
                "interruption_count": s.interruption_count,
                "median_latency_ms": s.median_latency_ms,
                "avatar_speaking_ms": s.avatar_speaking_ms,
                "transcript": [
                    {
                        "position": e.position,
                        "speaker": e.speaker,
                        "text": e.text,
                        "started_at": e.started_at,
                        "ended_at": e.ended_at,
                        "interrupted": e.interrupted,
                        "from_chunks": e.from_chunks,
                        "origin": e.origin,
                        "latency_ms": e.latency_ms,
                    }
                    for e in s.transcript.all()
                ],
                "events": [
                    {
                        "seq": e.seq,
                        "source": e.source,
                        "client_ts": e.client_ts,
                        "received_at": e.received_at,
                        "event": e.payload,
                    }
                    for e in s.events.all()
                ],
            }
            for s in sessions
        ]
        return _download(
            json.dumps({"sessions": data}, cls=DjangoJSONEncoder, indent=2),
            "application/json",
            _export_name(sessions, "json"),
        )

    @admin.action(description="Export selected transcripts as CSV")
    def export_csv(self, request, queryset):
        sessions = list(queryset.prefetch_related("transcript").order_by("created_at"))
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            [
                "session_id",
                "status",
                "end_reason",
                "position",
                "speaker",
                "text",
                "intended_text",
                "started_at",
                "ended_at",
                "interrupted",
                "unanswered",
                "latency_ms",
                "origin",
            ]
        )
        for s in sessions:
            for e in s.transcript.all():
                writer.writerow(
                    [
                        s.id,
                        s.status,
                        s.end_reason,
                        e.position,
                        e.speaker,
                        e.text,
                        e.intended_text,
                        e.started_at.isoformat() if e.started_at else "",
                        e.ended_at.isoformat() if e.ended_at else "",
                        e.interrupted,
                        e.unanswered,
                        "" if e.latency_ms is None else e.latency_ms,
                        e.origin,
                    ]
                )
        return _download(out.getvalue(), "text/csv", _export_name(sessions, "csv"))

    @admin.action(description="Export selected transcripts as plain text")
    def export_text(self, request, queryset):
        sessions = list(queryset.prefetch_related("transcript").order_by("created_at"))
        parts = [
            f"Session {s.id} ({s.status}{', ' + s.end_reason if s.end_reason else ''})\n"
            f"Started {s.started_at or '–'}\n\n{as_text(s.transcript.all())}"
            for s in sessions
        ]
        return _download("\n\n".join(parts), "text/plain; charset=utf-8", _export_name(sessions, "txt"))

    @admin.action(description="End selected live sessions (stop at LiveAvatar)")
    def end_live_session(self, request, queryset):
        ended = 0
        for session in queryset.filter(status__in=LIVE_STATUSES):
            try:
                async_to_sync(lifecycle.stop_session)(session, "USER_CLOSED")
                ended += 1
            except LiveAvatarError as exc:
                self.message_user(request, f"Session {session.id} could not be stopped: {exc}", messages.ERROR)
        self.message_user(request, f"Ended {ended} live session(s).", messages.SUCCESS)
