"""Commands that staff or other systems send to a live conversation, kept as evidence of who did what."""

import uuid
from datetime import timedelta

from django.db import models
from django.utils import timezone

from sessions_app.models import AvatarSession


class Command(models.TextChoices):
    SPEAK_TEXT = "speak_text", "Say this"
    SPEAK_RESPONSE = "speak_response", "Ask the avatar"
    INTERRUPT = "interrupt", "Interrupt"
    START_LISTENING = "start_listening", "Start listening"
    STOP_LISTENING = "stop_listening", "Stop listening"
    END = "end", "End the conversation"


SPEAK_COMMANDS = (Command.SPEAK_TEXT, Command.SPEAK_RESPONSE)


class Outcome(models.TextChoices):
    PENDING = "pending", "Sent to the page, no answer yet"
    DELIVERED = "delivered", "The page published it"
    REFUSED = "refused", "The page refused it"
    NO_ANSWER = "no_answer", "The page did not confirm in time"


class ControlCommandQuerySet(models.QuerySet):
    def recent(self, session: AvatarSession, seconds: int = 60):
        return self.filter(session=session, created_at__gte=timezone.now() - timedelta(seconds=seconds))


class ControlCommand(models.Model):
    """One command relayed to a session's page. Its id travels with the command, so the page's
    forwarded copy and the transcript line it caused point back here."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(AvatarSession, on_delete=models.CASCADE, related_name="control_commands")
    command = models.CharField(max_length=16, choices=Command.choices)
    text = models.TextField(blank=True)
    # Who sent it, as AvatarSession.visitor_key records callers: staff:<username> or api:<key name>.
    origin = models.CharField(max_length=120)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.PENDING)
    message = models.TextField(blank=True, help_text="What happened, in words.")
    event_id = models.CharField(max_length=128, blank=True, help_text="The event_id the page published it with.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    objects = ControlCommandQuerySet.as_manager()

    class Meta:
        ordering = ["session", "created_at"]

    def __str__(self):
        return f"{self.get_command_display()} by {self.origin} ({self.outcome})"

    @property
    def sender_kind(self) -> str:
        """staff or api: all the visitor's page is told about who sent it."""
        return "staff" if self.origin.startswith("staff:") else "api"

    @property
    def end_reason(self) -> str:
        return "STAFF_ENDED" if self.sender_kind == "staff" else "API_ENDED"
