"""Staff manage profiles: LiveAvatar's avatars, voices, contexts and voice agents picked by name, the
embed snippet ready to copy, and today's usage against each budget."""

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme

from sessions_app.liveavatar import LiveAvatarError

from . import budgets, catalogue, embedding
from .models import AvatarProfile, validate_origins

# Form field → catalogue list.
PICKED = {"avatar_id": "avatars", "voice_id": "voices", "context_id": "contexts", "voice_agent_id": "voice_agents"}


class OriginsField(forms.CharField):
    """allowed_origins as a text box, one origin a line."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60, "placeholder": "https://www.example.com"})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return [line.strip() for line in (value or "").splitlines() if line.strip()]

    def validate(self, value):
        validate_origins(value)


class AvatarProfileForm(forms.ModelForm):
    allowed_origins = OriginsField(
        required=False, help_text="Sites that may embed this profile, one scheme://host[:port] a line. Empty: none."
    )

    # Set by AvatarProfileAdmin.get_form: the catalogue, or why it could not be loaded.
    catalogue = None
    catalogue_error = None

    class Meta:
        model = AvatarProfile
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        found = self.catalogue
        if found is None:  # the ids stay plain text boxes
            return
        for name, kind in PICKED.items():
            model_field = AvatarProfile._meta.get_field(name)
            choices = list(found[kind])
            current = self.initial.get(name) or ""
            if current and current not in dict(choices):
                choices.append((current, f"{current} (not in LiveAvatar's catalogue)"))
            if model_field.blank:
                choices.insert(0, ("", "—"))
            self.fields[name] = forms.ChoiceField(
                choices=choices,
                required=not model_field.blank,
                label=model_field.verbose_name.capitalize(),
                help_text=model_field.help_text,
            )


@admin.register(AvatarProfile)
class AvatarProfileAdmin(admin.ModelAdmin):
    form = AvatarProfileForm
    list_display = ["name", "slug", "active", "page_link", "live_usage", "minutes_usage"]
    list_filter = ["active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["budget_usage"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "active"]}),
        (
            "What LiveAvatar gets",
            {
                "fields": [
                    "avatar_id",
                    "voice_id",
                    "context_id",
                    "voice_agent_id",
                    "language",
                    "interactivity",
                    "video_quality",
                    "is_sandbox",
                    "max_session_duration",
                ]
            },
        ),
        ("The page", {"fields": ["heading", "intro"]}),
        ("Embedding", {"fields": ["allowed_origins"]}),
        ("Budgets", {"fields": ["visitor_minutes_per_day", "minutes_per_day", "max_live_sessions", "budget_usage"]}),
        ("Live control", {"fields": ["session_start", "mark_operator_lines"]}),
        ("Privacy", {"fields": ["redaction_enabled", "redaction_kinds", "country", "retention_days"]}),
    ]

    class Media:
        js = ["profiles/copy-snippet.js"]

    def changeform_view(self, request, *args, **kwargs):
        # Loaded before the admin opens its transaction: the emulator served in process ends its
        # request by closing this thread's database connection.
        try:
            request.liveavatar_catalogue = async_to_sync(catalogue.load)()
        except LiveAvatarError as exc:
            request.liveavatar_catalogue_error = str(exc)
        return super().changeform_view(request, *args, **kwargs)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)  # a class made for this request
        form.catalogue = getattr(request, "liveavatar_catalogue", None)
        form.catalogue_error = getattr(request, "liveavatar_catalogue_error", None)
        return form

    def get_urls(self):
        refresh = path(
            "refresh-catalogue/",
            self.admin_site.admin_view(self.refresh_catalogue),
            name="profiles_avatarprofile_refresh_catalogue",
        )
        return [refresh, *super().get_urls()]

    def refresh_catalogue(self, request):
        """Fetch LiveAvatar's catalogue again (POST), then go back where the button was."""
        if request.method == "POST":
            try:
                found = async_to_sync(catalogue.load)(refresh=True)
            except LiveAvatarError as exc:
                self.message_user(request, f"LiveAvatar's catalogue could not be loaded: {exc}", messages.ERROR)
            else:
                counts = ", ".join(f"{len(items)} {kind.replace('_', ' ')}" for kind, items in found.items())
                self.message_user(request, f"LiveAvatar's catalogue is refreshed: {counts}.", messages.SUCCESS)
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
            back = reverse("admin:profiles_avatarprofile_changelist")
        return redirect(back)

    def render_change_form(self, request, context, *args, obj=None, **kwargs):
        if obj is not None:
            # The snippet names this site as the request reached it (the admin is on the same host).
            context["embed_snippet"] = embedding.snippet(request, obj)
            context["embed_page_url"] = embedding.embed_info(request, obj)["url"]
        form = context.get("adminform") and context["adminform"].form
        if form is not None and form.catalogue_error and request.method == "GET":
            self.message_user(
                request,
                f"LiveAvatar's catalogue could not be loaded ({form.catalogue_error}): type the ids instead.",
                messages.WARNING,
            )
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)

    @admin.display(description="Page")
    def page_link(self, profile):
        url = reverse("sessions_app:index") if profile.is_default else reverse("profiles:page", args=[profile.slug])
        return format_html('<a href="{}">{}</a>', url, url)

    @admin.display(description="Live now")
    def live_usage(self, profile):
        used = budgets.usage(profile)
        return f"{used.live} of {profile.max_live_sessions}" if profile.max_live_sessions is not None else used.live

    @admin.display(description="Minutes today")
    def minutes_usage(self, profile):
        used = budgets.usage(profile)
        if profile.minutes_per_day is None:
            return used.minutes_today
        return f"{used.minutes_today} of {profile.minutes_per_day}"

    @admin.display(description="Usage today")
    def budget_usage(self, profile):
        if not profile.pk:
            return "–"
        used = budgets.usage(profile)
        rows = [
            ("Live sessions", used.live, profile.max_live_sessions),
            ("Minutes today (all visitors)", used.minutes_today, profile.minutes_per_day),
        ]
        lines = format_html_join(
            "",
            "<li>{}: {} of {}</li>",
            ((label, value, "no limit" if limit is None else limit) for label, value, limit in rows),
        )
        return format_html("<ul>{}</ul>", lines)
