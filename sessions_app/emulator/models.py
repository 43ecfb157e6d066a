"""Sessions of the emulated LiveAvatar service.

Deadlines (sandbox ~60 s, idle 300 s, max_session_duration) are not run by a scheduler: every read
calls `end_if_due()`, and the room keeps a timer of its own. All of them are divided by
settings.EMULATOR_SPEED so tests run fast.
"""

import math
import uuid
from datetime import timedelta

import jwt
from django.conf import settings
from django.db import models
from django.utils import timezone

SANDBOX_SECONDS = 60
IDLE_SECONDS = 300
CREDITS_PER_MINUTE = 2  # FULL mode; sandbox sessions are free
# How long a session token is good for (start, keep-alive and stop all need it).
TOKEN_HOURS = 6


class EmulatedSession(models.Model):
    CREATED = "created"  # token minted
    STARTED = "started"  # /v1/sessions/start called
    ENDED = "ended"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    config = models.JSONField(default=dict)
    status = models.CharField(max_length=16, default=CREATED)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    # Keep-alive calls and visitor activity in the room; the idle timeout runs from here.
    last_activity_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, blank=True)
    max_session_duration = models.PositiveIntegerField(null=True, blank=True)
    # [{role, transcript, absolute_timestamp, relative_timestamp}] as GET .../transcript returns it.
    transcript = models.JSONField(default=list)

    class Meta:
        ordering = ["-created_at"]

    @property
    def session_token(self) -> str:
        """A JWT naming the session and its expiry, as the real API's bearer tokens are."""
        claims = {"sub": str(self.id), "iat": self.created_at, "exp": self.created_at + timedelta(hours=TOKEN_HOURS)}
        return jwt.encode(claims, settings.EMULATOR_SESSION_TOKEN_SECRET, algorithm="HS256")

    @classmethod
    def for_token(cls, token: str) -> "EmulatedSession | None":
        """The session a valid, unexpired session token names; None for anything else."""
        try:
            claims = jwt.decode(token, settings.EMULATOR_SESSION_TOKEN_SECRET, algorithms=["HS256"])
            return cls.objects.filter(id=uuid.UUID(claims["sub"])).first()
        except (jwt.PyJWTError, KeyError, ValueError, TypeError):
            return None

    @property
    def is_sandbox(self) -> bool:
        return bool(self.config.get("is_sandbox"))

    @property
    def interactivity_type(self) -> str:
        return self.config.get("interactivity_type") or "CONVERSATIONAL"

    @property
    def effective_max_duration(self) -> int | None:
        """Seconds a started session may run (sandbox sessions: about a minute)."""
        if self.is_sandbox:
            return min(SANDBOX_SECONDS, self.max_session_duration or SANDBOX_SECONDS)
        return self.max_session_duration

    def deadline(self) -> tuple | None:
        """(when, end_reason) of the first deadline of a started session, in emulated time."""
        if self.status != self.STARTED:
            return None
        speed = settings.EMULATOR_SPEED
        idle = (self.last_activity_at or self.started_at) + timedelta(seconds=IDLE_SECONDS / speed)
        deadlines = [(idle, "IDLE_TIMEOUT")]
        if self.effective_max_duration:
            end = self.started_at + timedelta(seconds=self.effective_max_duration / speed)
            deadlines.append((end, "MAX_DURATION_REACHED"))
        return min(deadlines)

    def end(self, reason: str, at=None):
        self.status = self.ENDED
        self.end_reason = reason
        self.ended_at = self.updated_at = at or timezone.now()
        self.save(update_fields=["status", "end_reason", "ended_at", "updated_at"])

    def end_if_due(self) -> bool:
        """End the session if a deadline has passed; True when it ended just now."""
        due = self.deadline()
        if due is None or due[0] > timezone.now():
            return False
        self.end(due[1], at=due[0])
        return True

    def touch(self):
        self.last_activity_at = self.updated_at = timezone.now()
        self.save(update_fields=["last_activity_at", "updated_at"])

    def record(self, role: str, text: str):
        """Append one utterance to the transcript (re-read first: the REST side may have saved meanwhile)."""
        now = timezone.now()
        start = self.started_at or self.created_at
        entry = {
            "role": role,
            "transcript": text,
            "absolute_timestamp": int(now.timestamp()),
            "relative_timestamp": int((now - start).total_seconds()),
        }
        self.refresh_from_db(fields=["transcript"])
        self.transcript.append(entry)
        self.save(update_fields=["transcript"])

    @property
    def credits_consumed(self) -> int:
        """Credits this session used: every started minute of emulated time (the first one at start)."""
        if self.is_sandbox or not self.started_at:
            return 0
        seconds = ((self.ended_at or timezone.now()) - self.started_at).total_seconds() * settings.EMULATOR_SPEED
        return CREDITS_PER_MINUTE * max(1, math.ceil(seconds / 60))

    def to_entry(self) -> dict:
        """ListSessionEntrySchema, plus the historic fields once ended."""
        end = self.ended_at or timezone.now()
        entry = {
            "id": str(self.id),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "duration": int((end - self.started_at).total_seconds()) if self.started_at else 0,
            "source": "API",
            "mode": "FULL",
            "is_sandbox": self.is_sandbox,
            "credits_consumed": self.credits_consumed,
        }
        if self.status == self.ENDED:
            entry.update(end_at=self.ended_at.isoformat(), end_reason=self.end_reason)
        return entry
