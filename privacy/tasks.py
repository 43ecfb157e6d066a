"""Privacy's background tasks: counting what a session's transcript had redacted, and the purge."""

import logging
from datetime import timedelta

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.tasks import TaskResultStatus, task
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from profiles.models import AvatarProfile
from sessions_app import liveavatar
from sessions_app.models import AvatarSession

from .models import SessionRedactions, purge_at
from .redaction import count_placeholders

log = logging.getLogger(__name__)


@task
def count_redactions(session_id: str) -> dict:
    """Store how many items of each kind the session's transcript had replaced."""
    session = AvatarSession.objects.filter(pk=session_id).first()
    if session is None:
        return {}
    texts = []
    for text, intended in session.transcript.values_list("text", "intended_text"):
        texts += [text, intended]
    counts = count_placeholders(texts)
    SessionRedactions.objects.update_or_create(
        session=session, defaults={"counts": counts, "counted_at": timezone.now()}
    )
    return counts


@task
def purge_expired_sessions() -> int:
    """The periodic purge (`purge`). Queues the next one first, so that a purge killed midway still
    has its successor."""
    schedule_purge(after=settings.RETENTION_PURGE_INTERVAL_SECONDS)
    return purge(timezone.now())


def purge(now) -> int:
    """Delete the sessions past their retention period at `now`, here (rows, events, transcript
    entries, webhook deliveries, all by cascade) and at LiveAvatar; how many. Live sessions wait
    for their end."""
    # Created before the shortest retention in use; purge_at decides for each one.
    periods = [p.kept_days for p in AvatarProfile.objects.all()] + [settings.RETENTION_DAYS]
    periods = [days for days in periods if days is not None]
    if not periods:
        return 0
    due = (
        AvatarSession.objects.filter(created_at__lt=now - timedelta(days=min(periods)))
        .finished()
        .select_related("profile")
    )
    purged = 0
    # A list, not an iterator: a LiveAvatar call through the emulator in process ends with Django
    # closing this thread's connection, and an open cursor with it.
    for session in list(due):
        when = purge_at(session)
        if when is None or when > now:  # kept forever, or not yet
            continue
        if session.liveavatar_session_id:
            try:
                async_to_sync(_forget_at_liveavatar)(session.liveavatar_session_id)
            except liveavatar.LiveAvatarError as exc:
                # Kept until LiveAvatar has forgotten it too: the next purge tries again.
                log.warning("purge: LiveAvatar kept the events of session %s: %s", session.id, exc)
                continue
        session.delete()
        purged += 1
    if purged:
        log.info("purge: deleted %d sessions past their retention period", purged)
    return purged


async def _forget_at_liveavatar(liveavatar_session_id: str) -> None:
    try:
        await liveavatar.get_client().delete_events(liveavatar_session_id)
    except liveavatar.LiveAvatarError as exc:
        if exc.status != 404:  # a session LiveAvatar no longer knows has nothing left there
            raise


def schedule_purge(after: float = 0) -> bool:
    """Queue a purge in `after` seconds unless one is already waiting; True when queued."""
    with transaction.atomic():
        waiting = DBTaskResult.objects.filter(
            status=TaskResultStatus.READY, task_path=purge_expired_sessions.module_path
        )
        if waiting.exists():
            return False
        purge_expired_sessions.using(run_after=timezone.now() + timedelta(seconds=after)).enqueue()
    return True
