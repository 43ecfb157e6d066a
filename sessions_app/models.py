"""What the product stores: avatar sessions, the events forwarded from browsers, transcripts, API keys."""

import hashlib
import logging
import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from . import signals

log = logging.getLogger(__name__)


class SessionStatus(models.TextChoices):
    CREATED = "created", "Created"  # token minted, not started yet
    STARTED = "started", "Started"  # browser called /v1/sessions/start
    ACTIVE = "active", "Active"  # room joined, avatar live
    ENDED = "ended", "Ended"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"  # token never started


# Legal moves of the status machine (AvatarSession.move_to); anything else is ignored and logged.
TRANSITIONS = {
    SessionStatus.CREATED: {
        SessionStatus.STARTED,
        SessionStatus.ACTIVE,
        SessionStatus.ENDED,
        SessionStatus.FAILED,
        SessionStatus.EXPIRED,
    },
    SessionStatus.STARTED: {SessionStatus.ACTIVE, SessionStatus.ENDED, SessionStatus.FAILED},
    SessionStatus.ACTIVE: {SessionStatus.ENDED, SessionStatus.FAILED},
    SessionStatus.ENDED: set(),
    SessionStatus.FAILED: set(),
    SessionStatus.EXPIRED: set(),
}
LIVE_STATUSES = (SessionStatus.CREATED, SessionStatus.STARTED, SessionStatus.ACTIVE)
IN_CONVERSATION = (SessionStatus.STARTED, SessionStatus.ACTIVE)
# A visit whose token nobody started: no conversation, on no staff screen and in no figure by default.
NEVER_STARTED = (SessionStatus.CREATED, SessionStatus.EXPIRED)


class EndReason(models.TextChoices):
    """Why a session ended, as we record it. LiveAvatar's own reasons (SessionEndReasonEnum, e.g.
    MAX_DURATION_REACHED, IDLE_TIMEOUT) are stored as they come, beside these."""

    USER_CLOSED = "USER_CLOSED", "Visitor ended it"
    STAFF_ENDED = "STAFF_ENDED", "Staff ended it"
    API_ENDED = "API_ENDED", "Ended through the API"
    ORPHANED = "ORPHANED", "Visitor's page went away"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED", "Budget used up"
    MAX_DURATION = "MAX_DURATION", "Time limit reached"
    START_FAILED = "START_FAILED", "Could not start"
    NOT_STARTED_IN_TIME = "NOT_STARTED_IN_TIME", "Not started in time"


class Interactivity(models.TextChoices):
    CONVERSATIONAL = "CONVERSATIONAL", "Conversational (the avatar listens all the time)"
    PUSH_TO_TALK = "PUSH_TO_TALK", "Push to talk"


class CreatedVia(models.TextChoices):
    PAGE = "page", "Visitor page"
    API = "api", "API"


class AvatarSessionQuerySet(models.QuerySet):
    def conversations(self):
        """Sessions somebody started (or tried to): not the visits that only minted a token."""
        return self.exclude(status__in=NEVER_STARTED)

    def live(self):
        """Sessions not over yet: minted, started or active."""
        return self.filter(status__in=LIVE_STATUSES)

    def finished(self):
        return self.exclude(status__in=LIVE_STATUSES)

    def in_feed(self):
        """Conversations under way: what the staff feed shows live (a token nobody started is not one yet)."""
        return self.filter(status__in=IN_CONVERSATION)

    def orphaned(self, now: datetime):
        """Conversations whose page went away: no forwarding socket, and silent for ORPHAN_GRACE_SECONDS."""
        grace = timedelta(seconds=settings.ORPHAN_GRACE_SECONDS)
        # A live page forwards a keep-alive event every 60 s, so a socket silent for three grace
        # periods is one whose Daphne process died without decrementing open_connections.
        no_socket = Q(open_connections__lte=0) | Q(last_event_at__lt=now - 3 * grace)
        # A started session that never forwarded an event (page died at once) is judged by its start time.
        silent = Q(last_event_at__lt=now - grace) | Q(last_event_at__isnull=True, started_at__lt=now - grace)
        return self.in_feed().filter(no_socket, silent)

    def expired(self, now: datetime, after_seconds: int | None = None):
        """Tokens nobody started within `after_seconds` (TOKEN_EXPIRY_SECONDS unless given)."""
        seconds = settings.TOKEN_EXPIRY_SECONDS if after_seconds is None else after_seconds
        return self.filter(status=SessionStatus.CREATED, created_at__lt=now - timedelta(seconds=seconds))

    def transcript_behind(self):
        """Sessions with transcript events stored since their transcript was last built."""
        return self.filter(transcript_version__gt=F("transcript_built_version"))


class AvatarSession(models.Model):
    """One LiveAvatar conversation, from the token minted on a visit to its end."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    liveavatar_session_id = models.CharField("LiveAvatar session id", max_length=64, unique=True, null=True, blank=True)
    # Indexed by (status, last_event_at) in Meta.indexes.
    status = models.CharField(max_length=16, choices=SessionStatus.choices, default=SessionStatus.CREATED)
    end_reason = models.CharField(max_length=64, blank=True, help_text="An EndReason, or LiveAvatar's own reason.")
    # Who ended it, when a person or a key did: "staff:<username>", "api:<key name>"; empty otherwise.
    ended_by = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True, help_text="Why minting or the session failed, in plain words.")
    # The token configuration sent to LiveAvatar (never the API key).
    config = models.JSONField(default=dict, blank=True)
    avatar_id = models.CharField(max_length=64, blank=True, db_index=True)
    # The profile whose page, embed or API call minted it; its budgets count this session.
    profile = models.ForeignKey(
        "profiles.AvatarProfile", on_delete=models.PROTECT, null=True, blank=True, related_name="sessions"
    )
    is_sandbox = models.BooleanField(default=False)
    interactivity = models.CharField(max_length=32, choices=Interactivity.choices, default=Interactivity.CONVERSATIONAL)
    max_session_duration = models.PositiveIntegerField(null=True, blank=True)
    # Who asked for it: the visitor's Django session key, or the API key's name.
    visitor_key = models.CharField(max_length=64, blank=True)
    # The client's address (REMOTE_ADDR; behind nginx, X-Forwarded-For via Daphne's --proxy-headers):
    # the mint rate limit also counts per address, so dropping the cookie does not reset it.
    client_address = models.CharField(max_length=64, blank=True)
    created_via = models.CharField(
        "created through", max_length=16, choices=CreatedVia.choices, default=CreatedVia.PAGE
    )
    # LIVEAVATAR_SESSION_START = "server": the session token, kept here (never sent to the page) until
    # the server has started the session with it; keep-alive and stop then use the API key.
    start_token = models.TextField(blank=True, editable=False)

    created_at = models.DateTimeField("created", default=timezone.now, db_index=True)
    started_at = models.DateTimeField("started", null=True, blank=True)
    ended_at = models.DateTimeField("ended", null=True, blank=True)
    last_event_at = models.DateTimeField("last event", null=True, blank=True)
    # Open forwarding websockets; the orphan reaper leaves sessions with one alone.
    open_connections = models.IntegerField(default=0)

    # Per-session metrics, recomputed from the transcript when it changes.
    turn_count = models.PositiveIntegerField("utterances", default=0)
    interruption_count = models.PositiveIntegerField("interruptions", default=0)
    median_latency_ms = models.PositiveIntegerField("median latency (milliseconds)", null=True, blank=True)
    avatar_speaking_ms = models.PositiveIntegerField("avatar speaking (milliseconds)", default=0)
    reconciled_at = models.DateTimeField("reconciled", null=True, blank=True)
    # Incremental transcript builds: events up to this seq are folded into the first
    # `transcript_position` entries for good (0: build from the first event).
    transcript_seq = models.PositiveIntegerField(default=0, editable=False)
    transcript_position = models.PositiveIntegerField(default=0, editable=False)
    # Bumped with every round that stores transcript events; the transcript was last built from
    # what was stored at `transcript_built_version`. Any process can tell a transcript behind.
    transcript_version = models.PositiveIntegerField(default=0, editable=False)
    transcript_built_version = models.PositiveIntegerField(default=0, editable=False)

    objects = AvatarSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "last_event_at"]),
            # The mint rate limit counts a visitor's and an address's rows of the last minute: with
            # the time in the index that is a short range, not every row the address ever minted.
            models.Index(fields=["visitor_key", "created_at"], name="session_visitor_recent"),
            models.Index(fields=["client_address", "created_via", "created_at"], name="session_address_recent"),
        ]
        permissions = [("control_session", "Can send commands to a live session")]

    def __str__(self):
        return f"{self.id} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    def can_move_to(self, status: str) -> bool:
        """Whether the status machine would move this session to `status` (not where it is already)."""
        return status != self.status and status in TRANSITIONS[self.status]

    def move_to(self, status: str, at: datetime, reason: str = "", error: str = "") -> bool:
        """Move the session (not saved here) to `status` at `at` if the machine allows it; True when it
        moved. A move it does not allow is logged and ignored: a late or repeated event never reopens
        an ended session. Sends signals.status_changed on a move."""
        if status == self.status:
            return False
        if status not in TRANSITIONS[self.status]:
            log.info("session %s: ignored %s → %s (%s)", self.id, self.status, status, reason or "no reason")
            return False
        previous, self.status = self.status, status
        if status in IN_CONVERSATION:
            self.started_at = self.started_at or at
        else:
            self.ended_at = at
            # A reason claimed by whoever is stopping it (lifecycle.stop_session) wins over the stop's own echo.
            self.end_reason = self.end_reason or reason
            self.error = error or self.error
        signals.status_changed.send(sender=AvatarSession, session=self, previous=previous)
        return True

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.ended_at or timezone.now()
        return max(0.0, (end - self.started_at).total_seconds())


class EventSource(models.TextChoices):
    SERVER = "server", "LiveAvatar server event"  # received on agent-response
    COMMAND = "command", "Command sent"  # published on agent-control
    CLIENT = "client", "Page lifecycle"  # the page's own events (started, mic, errors, ...)


class SessionEvent(models.Model):
    """One forwarded event, kept exactly as received. Evidence: never edited."""

    session = models.ForeignKey(AvatarSession, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField(help_text="The page's per-session sequence number.")
    event_id = models.CharField(max_length=128, blank=True)
    event_type = models.CharField(max_length=96, db_index=True)
    source = models.CharField(max_length=16, choices=EventSource.choices)
    payload = models.JSONField()
    client_ts = models.DateTimeField(null=True, blank=True, help_text="The page's clock (its ts).")
    received_at = models.DateTimeField(default=timezone.now, help_text="The server's clock: what times the session.")
    clock_skewed = models.BooleanField(
        default=False, help_text="The page's clock was more than CLOCK_SKEW_SECONDS away from the server's."
    )

    class Meta:
        ordering = ["session", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["session", "seq"], name="event_unique_seq"),
            models.UniqueConstraint(
                fields=["session", "source", "event_id"], name="event_unique_event_id", condition=~models.Q(event_id="")
            ),
        ]

    def __str__(self):
        return f"#{self.seq} {self.event_type}"


class Speaker(models.TextChoices):
    USER = "user", "Visitor"
    AVATAR = "avatar", "Avatar"


class TranscriptOrigin(models.TextChoices):
    BROWSER = "browser", "Forwarded by the browser"
    LIVEAVATAR = "liveavatar", "Fetched from LiveAvatar"


class TranscriptEntry(models.Model):
    """One utterance, in spoken order."""

    session = models.ForeignKey(AvatarSession, on_delete=models.CASCADE, related_name="transcript")
    position = models.PositiveIntegerField()
    speaker = models.CharField(max_length=8, choices=Speaker.choices)
    text = models.TextField(help_text="What was said: for an interrupted turn, up to the interruption.")
    intended_text = models.TextField(blank=True, help_text="What the avatar meant to say, where it was cut short.")
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    interrupted = models.BooleanField(default=False)
    unanswered = models.BooleanField(
        default=False, help_text="Visitor turns: an interrupt or the end dropped the answer."
    )
    from_chunks = models.BooleanField(default=False, help_text="Built from partial chunks: no final arrived.")
    origin = models.CharField(max_length=16, choices=TranscriptOrigin.choices, default=TranscriptOrigin.BROWSER)
    latency_ms = models.PositiveIntegerField(
        "latency (milliseconds)",
        null=True,
        blank=True,
        help_text="Avatar turns: the visitor's turn ended (or the avatar's speech then) → avatar started.",
    )
    sent_by = models.CharField(
        max_length=120,
        blank=True,
        help_text="A line sent through live control: who sent it (staff:<user> or api:<key name>).",
    )

    class Meta:
        ordering = ["session", "position"]
        constraints = [models.UniqueConstraint(fields=["session", "position"], name="transcript_unique_position")]

    def __str__(self):
        return f"{self.speaker}: {self.text[:60]}"

    @property
    def sender_words(self) -> str:
        """Who sent a live-control line, in words ("staff member alice", "API key crm"), or ""."""
        kind, _, name = self.sent_by.partition(":")
        if not self.sent_by:
            return ""
        return f"staff member {name}" if kind == "staff" else f"API key {name}"

    @property
    def speaker_words(self) -> str:
        """The speaker as a transcript shows it: an operator's line is the avatar's, on their behalf."""
        if self.sent_by and self.speaker == Speaker.AVATAR:
            return f"Avatar (on behalf of {self.sender_words})"
        if self.sent_by:
            return f"{self.sender_words[0].upper()}{self.sender_words[1:]} (asked the avatar)"
        return self.get_speaker_display()


class ApiKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A key for the REST API. Only its SHA-256 is stored; the key is shown once, at creation."""

    SCOPES = (
        "sessions:read",
        "sessions:write",
        "sessions:control",
        "profiles:read",
        "profiles:write",
        "webhooks:write",
    )

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The per-key throttle's one-minute window, counted on the row itself so that every Daphne
    # process sees the same count (the default cache is per process).
    window_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    window_requests = models.PositiveIntegerField(default=0, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def create(cls, name: str, scopes: list[str]) -> tuple["ApiKey", str]:
        """Create a key; returns the row and the raw key, which is not stored anywhere."""
        raw = "ak_" + secrets.token_urlsafe(32)
        key = cls.objects.create(name=name, prefix=raw[:10], key_hash=cls.hash(raw), scopes=sorted(set(scopes)))
        return key, raw

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
