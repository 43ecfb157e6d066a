"""Waiting on stated conditions: any condition, and the transcript catch-up's rule (a transcript is at
most REBUILD_GAP behind its last ack)."""

import asyncio
import time

from sessions_app.models import AvatarSession
from sessions_app.transcript_catchup import REBUILD_GAP

# Seconds a loaded test machine may add to the rule (a thread not scheduled, a slow disk).
SLACK = 5.0


async def transcript_caught_up(session_id, within: float = REBUILD_GAP + SLACK) -> AvatarSession:
    """The session once its transcript holds every event stored, failing after `within` seconds."""
    deadline = time.monotonic() + within
    while await AvatarSession.objects.transcript_behind().filter(pk=session_id).aexists():
        assert time.monotonic() < deadline, f"the transcript of {session_id} is still behind after {within} s"
        await asyncio.sleep(0.02)
    return await AvatarSession.objects.aget(pk=session_id)


def transcript_caught_up_sync(session_id, within: float = REBUILD_GAP + SLACK) -> AvatarSession:
    """transcript_caught_up, for a synchronous test (the browser tests)."""
    deadline = time.monotonic() + within
    while AvatarSession.objects.transcript_behind().filter(pk=session_id).exists():
        assert time.monotonic() < deadline, f"the transcript of {session_id} is still behind after {within} s"
        time.sleep(0.02)
    return AvatarSession.objects.get(pk=session_id)


def wait_for(condition, timeout: float = 20.0, what: str = "the condition"):
    """What `condition()` returns once it is true, polling; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
