"""Session events become webhook deliveries, queued in the transaction that stores the change."""

from django.conf import settings
from django.dispatch import receiver

from sessions_app import signals
from sessions_app.models import SessionStatus

from .delivery import record_event


@receiver(signals.status_changed, dispatch_uid="webhooks.on_status_changed")
def on_status_changed(sender, session, previous, **kwargs):
    if previous == SessionStatus.CREATED and session.status in (SessionStatus.STARTED, SessionStatus.ACTIVE):
        record_event(session, "session.started")
    elif session.status in (SessionStatus.ENDED, SessionStatus.FAILED) and session.started_at:
        # Sent once the last events are in and the transcript has settled.
        record_event(session, "session.ended", delay=settings.SESSION_SETTLE_SECONDS)


@receiver(signals.transcript_reconciled, dispatch_uid="webhooks.on_transcript_reconciled")
def on_transcript_reconciled(sender, session, **kwargs):
    record_event(session, "transcript.reconciled")
