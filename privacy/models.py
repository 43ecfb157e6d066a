"""What privacy keeps of a session: how much was redacted, by kind."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.formats import date_format

from sessions_app.models import AvatarSession


class SessionRedactions(models.Model):
    """How many items of each kind were replaced in a session's transcript ({"email": 1, ...})."""

    session = models.OneToOneField(AvatarSession, on_delete=models.CASCADE, primary_key=True, related_name="redactions")
    counts = models.JSONField(default=dict)
    counted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "session redactions"

    def __str__(self):
        return ", ".join(f"{kind}: {count}" for kind, count in sorted(self.counts.items())) or "nothing redacted"


def retention_days(session) -> int | None:
    """Days a session is kept (None: forever): its profile's, else the site's RETENTION_DAYS."""
    return session.profile.kept_days if session.profile_id else settings.RETENTION_DAYS


def purge_at(session) -> datetime | None:
    """When the purge will delete the session (None: never). Counted from when it was created."""
    days = retention_days(session)
    return None if days is None else session.created_at + timedelta(days=days)


def purge_date(session) -> str:
    """When the purge will delete the session, in words for staff."""
    when = purge_at(session)
    return "Kept forever" if when is None else date_format(timezone.localtime(when), "DATETIME_FORMAT")
