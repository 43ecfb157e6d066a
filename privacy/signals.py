"""Count a session's redactions once its transcript is final: after the end, and after reconciliation."""

from datetime import timedelta

from django.conf import settings
from django.dispatch import receiver
from django.utils import timezone

from sessions_app import signals
from sessions_app.models import SessionStatus

from .tasks import count_redactions


def _count_later(session) -> None:
    # The last events of a session may follow its end by a moment; count once they are in.
    when = timezone.now() + timedelta(seconds=settings.SESSION_SETTLE_SECONDS)
    count_redactions.using(run_after=when).enqueue(str(session.pk))


@receiver(signals.status_changed, dispatch_uid="privacy.count_at_end")
def count_at_end(sender, session, previous, **kwargs):
    if session.status in (SessionStatus.ENDED, SessionStatus.FAILED):
        _count_later(session)


@receiver(signals.transcript_reconciled, dispatch_uid="privacy.count_after_reconcile")
def count_after_reconcile(sender, session, **kwargs):
    _count_later(session)
