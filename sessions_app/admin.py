"""Staff review of sessions: list, filters, transcript search, the evidence page, exports, ending a live session.

Sessions, events and transcripts are evidence: nothing here edits them. Deleting a session deletes
its events and transcript (the foreign keys cascade).
"""

import csv
import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import async_to_sync
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.cache import cache
from django.http import HttpResponse
from django.utils import timezone
from django.utils.html import format_html
from ninja.responses import NinjaJSONEncoder

from privacy.models import purge_date

from . import lifecycle, liveavatar, transcript, transcript_rows
from .exports import as_text
from .liveavatar import LiveAvatarError
from .models import NEVER_STARTED, ApiKey, AvatarSession, EndReason
from .schemas import SessionRecordOut

log = logging.getLogger(__name__)

# The app list beside every page would take a quarter of a 1280 px screen from the session list;
# the breadcrumbs and the home page lead everywhere it does.
admin.site.enable_nav_sidebar = False

# The event timeline on a session page stops here; the JSON export has them all.
TIMELINE_LIMIT = 2000
AVATAR_NAMES_KEY, AVATAR_NAMES_SECONDS = "sessions_app:avatar-names", 600


def _export_name(sessions, extension: str) -> str:
    return f"session-{sessions[0].id}.{extension}" if len(sessions) == 1 else f"sessions.{extension}"


def _download(body: str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def avatar_names() -> dict[str, str]:
    """Avatar id → name, from LiveAvatar's GET /v1/avatars (kept ten minutes); {} while it fails."""
    names = cache.get(AVATAR_NAMES_KEY)
    if names is None:
        try:
            # On a thread of its own: the in-process emulator's request ends by closing the database
            # connection of the thread that made it, which would be this request's.
            with ThreadPoolExecutor(1) as thread:
                ask = async_to_sync(liveavatar.get_client().list_avatars)
                page = thread.submit(ask, page_size=100).result() or {}
        except LiveAvatarError as exc:
            log.warning("avatar names unavailable: %s", exc)
            return {}
        names = {a["id"]: a.get("name") or a["id"] for a in page.get("results", []) if a.get("id")}
        cache.set(AVATAR_NAMES_KEY, names, AVATAR_NAMES_SECONDS)
    return names


def moment(value) -> str:
    """Year first, to the millisecond, in the site's time zone (the dashboard's format, to the ms)."""
    if value is None:
        return "–"
    local = timezone.localtime(value)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03}"


def _chunks_text(events) -> str:
    texts = [str(e.payload.get("text") or "") for e in events]
    if events[0].event_type in transcript.USER_CHUNKS:  # cumulative: the last one holds it all
        return texts[-1].strip()
    return " ".join(" ".join(t.split()) for t in texts if t.strip())


def timeline_rows(events) -> list[dict]:
    """The event timeline: one row an event, except that a turn's word-by-word chunks (consecutive
    events of one chunk type) fold into one row whose events open beneath it."""
    chunk_types = transcript.USER_CHUNKS | transcript.AVATAR_CHUNKS
    rows: list[dict] = []
    for event in events:
        item = {
            "event": event,
            "page_time": moment(event.client_ts),
            "received": moment(event.received_at),
            "json": json.dumps(event.payload, ensure_ascii=False),
        }
        last = rows[-1] if rows else None
        if event.event_type in chunk_types and last and last["event"].event_type == event.event_type:
            last["chunks"].append(item)
            continue
        rows.append({**item, "chunks": [item]})
    for row in rows:
        if len(row["chunks"]) > 1:
            row["text"] = _chunks_text([c["event"] for c in row["chunks"]])
            row["last_seq"] = row["chunks"][-1]["event"].seq
            row["skewed"] = any(c["event"].clock_skewed for c in row["chunks"])
        else:
            row["skewed"] = row["event"].clock_skewed
    return rows


class StartedFilter(admin.SimpleListFilter):
    """By default the list holds conversations: a visit that only minted a token is not one."""

    title = "conversation"
    parameter_name = "visits"

    def lookups(self, request, model_admin):
        return [("never", "Never started"), ("all", "Both")]

    def queryset(self, request, queryset):
        if self.value() == "never":
            return queryset.filter(status__in=NEVER_STARTED)
        if self.value() == "all":
            return queryset
        return queryset.conversations()

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Started",
        }
        for value, title in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": title,
            }


class AvatarFilter(admin.SimpleListFilter):
    title = "avatar"
    parameter_name = "avatar"

    def lookups(self, request, model_admin):
        ids = AvatarSession.objects.exclude(avatar_id="").order_by("avatar_id").values_list("avatar_id", flat=True)
        names = avatar_names()
        return sorted(((i, names.get(i, i)) for i in ids.distinct()), key=lambda choice: choice[1].lower())

    def queryset(self, request, queryset):
        return queryset.filter(avatar_id=self.value()) if self.value() else queryset


@admin.register(AvatarSession)
class AvatarSessionAdmin(admin.ModelAdmin):
    # Every column is a field of the session row (metrics are stored on it), so the list costs the
    # same few queries however many sessions there are.
    list_display = [
        "short_id",
        "profile",
        "status",
        "started_at",
        "duration",
        "avatar",
        "turn_count",
        "median_latency_ms",
        "ended",
    ]
    list_filter = [
        StartedFilter,
        "status",
        "profile",
        ("created_at", admin.DateFieldListFilter),
        AvatarFilter,
        "created_via",
    ]
    list_select_related = ["profile"]
    search_fields = ["transcript__text", "=id", "=liveavatar_session_id", "end_reason", "ended_by"]
    date_hierarchy = "created_at"
    actions = ["export_json", "export_csv", "export_text", "end_live_session"]
    change_form_template = "admin/sessions_app/avatarsession/change_form.html"
    fieldsets = [
        (None, {"fields": ["id", "liveavatar_session_id", "status", "end_reason", "ended_by", "error"]}),
        ("Times", {"fields": ["created_at", "started_at", "ended_at", "last_event_at", "reconciled_at"]}),
        ("Metrics", {"fields": ["turn_count", "median_latency_ms", "avatar_speaking_ms", "interruption_count"]}),
        ("Privacy", {"fields": ["purge_on", "redacted"]}),
        (
            "Configuration",
            {
                "fields": [
                    "profile",
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

    class Media:
        css = {"all": ["css/admin.css"]}

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

    @admin.display(description="Avatar", ordering="avatar_id")
    def avatar(self, session):
        return avatar_names().get(session.avatar_id, session.avatar_id[:8]) or "–"

    @admin.display(description="Ended how", ordering="end_reason")
    def ended(self, session):
        if not session.end_reason:
            return "–"
        label = EndReason(session.end_reason).label if session.end_reason in EndReason.values else session.end_reason
        if session.ended_by:
            return format_html("{}<br><small>{}</small>", label, session.ended_by)
        return label

    def change_view(self, request, object_id, form_url="", extra_context=None):
        session = self.get_object(request, object_id)
        if session is not None:
            transcript_rows.bring_up_to_date([session.pk])  # before the form loads the row's metrics
            extra_context = {
                **(extra_context or {}),
                "transcript": session.transcript.all(),
                "timeline": timeline_rows(session.events.order_by("seq")[:TIMELINE_LIMIT]),
                "timeline_total": session.events.count(),
                "timeline_limit": TIMELINE_LIMIT,
                "control_commands": session.control_commands.all(),
                "clock_skew_seconds": settings.CLOCK_SKEW_SECONDS,
            }
        return super().change_view(request, object_id, form_url, extra_context)

    # Exports: one file for however many sessions are selected.

    def _with_transcripts(self, queryset, *related):
        """The sessions selected, oldest first, their transcripts holding every event acknowledged so far."""
        transcript_rows.bring_up_to_date(queryset.values_list("pk", flat=True))
        return list(queryset.select_related("profile").prefetch_related("transcript", *related).order_by("created_at"))

    @admin.action(description="Export selected sessions as JSON (transcript and events)")
    def export_json(self, request, queryset):
        sessions = self._with_transcripts(queryset, "events")
        data = [SessionRecordOut.model_validate(s).model_dump() for s in sessions]
        return _download(
            # Written as the REST API writes it (times to the millisecond).
            json.dumps({"sessions": data}, cls=NinjaJSONEncoder, indent=2),
            "application/json",
            _export_name(sessions, "json"),
        )

    @admin.action(description="Export selected transcripts as CSV")
    def export_csv(self, request, queryset):
        sessions = self._with_transcripts(queryset)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            [
                "session_id",
                "profile",
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
                        s.profile.slug if s.profile else "",
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
        sessions = self._with_transcripts(queryset)
        parts = [
            f"Session {s.id} ({s.status}{', ' + s.end_reason if s.end_reason else ''})\n"
            f"Profile {s.profile.name if s.profile else '–'}\n"
            f"Started {s.started_at or '–'}\n\n{as_text(s.transcript.all())}"
            for s in sessions
        ]
        return _download("\n\n".join(parts), "text/plain; charset=utf-8", _export_name(sessions, "txt"))

    @admin.action(description="End selected live sessions (stop at LiveAvatar)")
    def end_live_session(self, request, queryset):
        ended = 0
        for session in queryset.live():
            try:
                async_to_sync(lifecycle.stop_session)(
                    session, "USER_CLOSED", EndReason.STAFF_ENDED, ended_by=f"staff:{request.user.get_username()}"
                )
                ended += 1
            except LiveAvatarError as exc:
                self.message_user(request, f"Session {session.id} could not be stopped: {exc}", messages.ERROR)
        self.message_user(request, f"Ended {ended} live session(s).", messages.SUCCESS)


# Staff create, list and revoke REST API keys. The raw key is shown once, right after creation.


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in ApiKey.SCOPES], widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "prefix", "scope_list", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(description="Scopes")
    def scope_list(self, key):
        return ", ".join(key.scopes)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        key, raw = ApiKey.create(obj.name, obj.scopes)
        # The admin goes on with obj (history, redirect): make it the row just created.
        obj.pk = key.pk
        obj.refresh_from_db()
        messages.warning(request, f"API key for “{key.name}”: {raw} — copy it now, it will not be shown again.")

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        count = queryset.active().update(revoked_at=timezone.now())
        messages.success(request, f"Revoked {count} API key(s).")
