"""What the operations views remember across processes: LiveAvatar's refusals and failures."""

from django.db import models
from django.utils import timezone


class LiveAvatarFailure(models.Model):
    """One LiveAvatar call that failed (429s included), for the dashboard's account box."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    endpoint = models.CharField(max_length=128)  # "POST /v1/sessions/token"
    kind = models.CharField(max_length=32)  # LiveAvatarError.kind
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    message = models.TextField(blank=True)  # what LiveAvatar said (the API key is never in it)
    retry_after = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self):
        return f"{self.endpoint}: {self.kind}"

    def in_words(self) -> str:
        """What went wrong, for staff: the call, LiveAvatar's own words and the status."""
        status = f"HTTP {self.status}" if self.status else self.kind
        message = self.message or "no message"
        return f"{self.endpoint} failed: {message} ({status})"
