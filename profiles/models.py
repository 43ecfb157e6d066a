"""Avatar profiles: what one page (or embed) sends to LiveAvatar, who may frame it, and what it may spend."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import IntegrityError, models
from django.utils import timezone

from privacy import redaction
from sessions_app.models import Interactivity


class VideoQuality(models.TextChoices):
    VERY_HIGH = "very_high", "Very high (1080p)"
    HIGH = "high", "High (720p)"
    MEDIUM = "medium", "Medium (480p)"
    LOW = "low", "Low (360p)"


def validate_redaction_kinds(value):
    if not isinstance(value, list) or not set(value) <= set(redaction.KINDS):
        raise ValidationError(f"Give a list of kinds, each one of {', '.join(redaction.KINDS)}.")


def validate_origins(value):
    """A list of `scheme://host[:port]`: exactly what a browser sends as Origin, nothing more."""
    if not isinstance(value, list):
        raise ValidationError("Give a list of origins, e.g. https://www.example.com.")
    for origin in value:
        parts = urlsplit(origin) if isinstance(origin, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username
            or origin != origin.strip().lower()
        ):
            raise ValidationError(
                f"{origin!r} is not an origin: write scheme://host[:port] in lower case, "
                "e.g. https://www.example.com (no path, no trailing slash)."
            )
        try:
            parts.port  # noqa: B018  (raises on a port that is not a number in range)
        except ValueError:
            raise ValidationError(f"{origin!r} has a port that is not a number from 0 to 65535.") from None


class AvatarProfileQuerySet(models.QuerySet):
    def default(self) -> "AvatarProfile":
        """The profile `/` serves (slug DEFAULT_PROFILE_SLUG). Seeded from the LIVEAVATAR_* settings by the
        first migrate, and again from them if it was deleted or the database emptied."""
        try:
            return self.get(slug=settings.DEFAULT_PROFILE_SLUG)
        except AvatarProfile.DoesNotExist:
            try:
                return self.create(**AvatarProfile.seed_fields(settings))
            except IntegrityError:  # another process seeded it meanwhile
                return self.get(slug=settings.DEFAULT_PROFILE_SLUG)


class AvatarProfile(models.Model):
    """One avatar as visitors meet it: its LiveAvatar configuration, its page, its embedding and its budgets."""

    slug = models.SlugField(unique=True, help_text="The page's address: /p/ and this, e.g. /p/front-desk/.")
    name = models.CharField(max_length=100)
    active = models.BooleanField(default=True, help_text="An inactive profile's page and embed mint nothing.")

    avatar_id = models.CharField("avatar", max_length=64)
    voice_id = models.CharField("voice", max_length=64, blank=True, help_text="Empty: the avatar's default voice.")
    context_id = models.CharField(
        "context",
        max_length=64,
        blank=True,
        help_text="What the avatar knows and how it behaves. Empty: it only listens.",
    )
    voice_agent_id = models.CharField(
        "voice agent",
        max_length=64,
        blank=True,
        help_text="A stored voice agent: when set, it is sent instead of the voice and the context.",
    )
    language = models.CharField(max_length=16, default="en")
    interactivity = models.CharField(max_length=16, choices=Interactivity.choices, default=Interactivity.CONVERSATIONAL)
    video_quality = models.CharField(max_length=16, choices=VideoQuality.choices, default=VideoQuality.HIGH)
    is_sandbox = models.BooleanField(
        default=False, help_text="Free one-minute sessions; they always use the sandbox avatar (Wayne)."
    )
    max_session_duration = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(30)], help_text="Seconds one conversation may last at most."
    )

    heading = models.CharField(max_length=200, default="Talk to the avatar")
    intro = models.TextField(blank=True, help_text="A few words under the heading.")

    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_origins],
        help_text="Sites that may embed it, one scheme://host[:port] each. Empty: none may.",
    )

    # Budgets; empty means no limit. A day is the server's day (TIME_ZONE), from midnight.
    visitor_minutes_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="Minutes of conversation one visitor may have a day."
    )
    minutes_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="Minutes of conversation all visitors together may have a day."
    )
    max_live_sessions = models.PositiveIntegerField(
        null=True, blank=True, help_text="Conversations that may run at the same time."
    )

    # Live control, privacy and retention; empty means the site's setting.
    session_start = models.CharField(
        max_length=8,
        blank=True,
        choices=[("browser", "The visitor's page"), ("server", "This server")],
        help_text="Who starts its LiveAvatar sessions. Empty: the site's LIVEAVATAR_SESSION_START.",
    )
    mark_operator_lines = models.BooleanField(
        "mark staff lines for the visitor",
        null=True,
        blank=True,
        help_text="Show the visitor which avatar lines staff or a system sent. Empty: CONTROL_MARK_OPERATOR_LINES.",
    )
    redaction_enabled = models.BooleanField(
        "redact personal data", null=True, blank=True, help_text="Empty: the site's REDACTION_ENABLED."
    )
    redaction_kinds = models.JSONField(
        "what is redacted",
        default=list,
        blank=True,
        validators=[validate_redaction_kinds],
        help_text="Of email, phone, card and iban. Empty: the site's REDACTION_KINDS.",
    )
    country = models.CharField(
        max_length=2,
        blank=True,
        help_text="Phone numbers written without + are read as this country's (ISO code, e.g. DE). "
        "Empty: the site's REDACTION_REGION.",
    )
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Days its sessions are kept before the purge. Empty: the site's RETENTION_DAYS.",
    )

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AvatarProfileQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def starts_on_server(self) -> bool:
        return (self.session_start or settings.LIVEAVATAR_SESSION_START) == "server"

    @property
    def marks_operator_lines(self) -> bool:
        return settings.CONTROL_MARK_OPERATOR_LINES if self.mark_operator_lines is None else self.mark_operator_lines

    @property
    def kept_days(self) -> int | None:
        """Days its sessions are kept (None: forever)."""
        return self.retention_days or settings.RETENTION_DAYS

    @staticmethod
    def seed_fields(source) -> dict:
        """The default profile's fields from the LIVEAVATAR_* settings (`source`: settings, or the migration's)."""
        return {
            "slug": source.DEFAULT_PROFILE_SLUG,
            "name": "Default",
            "avatar_id": source.LIVEAVATAR_AVATAR_ID,
            "voice_id": source.LIVEAVATAR_VOICE_ID,
            "context_id": source.LIVEAVATAR_CONTEXT_ID,
            "language": source.LIVEAVATAR_LANGUAGE,
            "interactivity": source.LIVEAVATAR_INTERACTIVITY,
            "video_quality": source.LIVEAVATAR_VIDEO_QUALITY,
            "is_sandbox": source.LIVEAVATAR_SANDBOX,
            "max_session_duration": source.LIVEAVATAR_MAX_SESSION_SECONDS,
        }

    @property
    def is_default(self) -> bool:
        return self.slug == settings.DEFAULT_PROFILE_SLUG

    def token_config(self, max_session_duration: int | None = None) -> dict:
        """The FULL-mode token configuration LiveAvatar gets (API.md §2.1). Never the API key."""
        if self.voice_agent_id:
            persona = {"voice_agent": {"id": self.voice_agent_id, "language": self.language}}
        else:
            details = {"voice_id": self.voice_id, "context_id": self.context_id}
            persona = {"avatar_persona": {"language": self.language, **{k: v for k, v in details.items() if v}}}
        config = {
            "mode": "FULL",
            # Sandbox sessions may only use the sandbox avatar.
            "avatar_id": settings.SANDBOX_AVATAR_ID if self.is_sandbox else self.avatar_id,
            "is_sandbox": self.is_sandbox,
            **persona,
            "interactivity_type": self.interactivity,
            "video_settings": {"quality": self.video_quality, "encoding": "H264"},
        }
        duration = max_session_duration or self.max_session_duration
        if duration:
            config["max_session_duration"] = duration
        return config

    def frame_ancestors(self) -> list[str]:
        """CSP frame-ancestors of this profile's page: its allowed origins, or 'none'."""
        return list(self.allowed_origins) or ["'none'"]

    def allows_origin(self, origin: str) -> bool:
        return origin in self.allowed_origins
