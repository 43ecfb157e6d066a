"""The transcript catch-up: stored transcript events folded into their sessions' transcripts.

One rule: a transcript is at most REBUILD_GAP behind its last ack. The catch-up sweeps: it
rebuilds every session given transcript events since its last sweep, REBUILD_CHUNK at a time,
on a thread of its own with its own database connection (stores never wait for it), and starts
the next sweep REBUILD_EVERY after this one started, at once if the last was longer ago. Events
that come faster share a rebuild: a rebuild costs about the same however few events it adds. A
read through the API or the admin brings a session that is behind up to date itself
(`transcript_rows.bring_up_to_date`), whichever process stored its events.
"""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from django.db import DatabaseError, close_old_connections, connections

from . import background, feed, transcript_rows
from .sqlite_writes import write_turn

log = logging.getLogger(__name__)

# Seconds from the start of one sweep to the start of the next. A rebuild costs about the same however
# few events it adds: at 1 s the ingest spent a third more CPU per event.
REBUILD_EVERY = 2.0
REBUILD_GAP = 2.5  # seconds a transcript may be behind its last ack: a sweep interval and the sweep itself
REBUILD_CHUNK = 32  # sessions rebuilt together at most: the rebuild's write transaction stays short


def mark(session_id, lowest_seq: int) -> None:
    """Transcript events of a session were stored, the lowest of them at `lowest_seq`."""
    _catchup().mark(session_id, lowest_seq)


class _Catchup:
    """The sessions with transcript events not folded yet, and the task that sweeps them. Only the
    event loop touches it; `folded` is the rebuilds' memo, used on the rebuild thread alone."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.dirty: dict = {}  # session id → lowest transcript seq stored since its last sweep
        self.swept_at = -REBUILD_EVERY  # loop time the last sweep started
        self.folded: dict = {}
        self.task: asyncio.Task | None = None

    def mark(self, session_id, lowest_seq: int) -> None:
        self.dirty[session_id] = min(lowest_seq, self.dirty.get(session_id, lowest_seq))
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self.run(), context=background.detached_context())

    async def run(self) -> None:
        thread = ThreadPoolExecutor(1, thread_name_prefix="transcripts")
        try:
            while self.dirty:
                wait = self.swept_at + REBUILD_EVERY - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # what is stored meanwhile joins this sweep
                self.swept_at = self.loop.time()
                sweep, self.dirty = list(self.dirty.items()), {}
                for start in range(0, len(sweep), REBUILD_CHUNK):
                    lowest = dict(sweep[start : start + REBUILD_CHUNK])
                    try:
                        rebuilt = await self.loop.run_in_executor(thread, _rebuild, lowest, self.folded)
                    except DatabaseError as exc:
                        log.warning("transcript rebuild of %d sessions failed: %s", len(lowest), exc)
                        for sid, seq in lowest.items():  # in the next sweep
                            self.dirty[sid] = min(seq, self.dirty.get(sid, seq))
                        continue
                    feed.publish(_frames(rebuilt))
        finally:
            closed = thread.submit(connections.close_all)  # the thread's own connection, closed in it
            thread.shutdown(wait=False)
            # Cancelled with its loop, a rebuild may still run on the thread: nothing of it outlives the loop.
            await asyncio.wrap_future(closed)


_catchup = background.per_loop(_Catchup)


async def idle() -> None:
    """Wait until this event loop's catch-up has nothing left to sweep (for a caller about to drop the database)."""
    task = _catchup().task
    if task is not None:
        await task


def _rebuild(lowest: dict, folded: dict) -> dict:
    """transcript_rows.rebuild on the catch-up's thread, with Django's checks of its connection."""
    close_old_connections()
    try:
        return transcript_rows.rebuild(lowest, write_turn, folded)
    finally:
        close_old_connections()


def _frames(rebuilt: dict) -> list[dict]:
    """Feed frames of a rebuild (session id → (session, changed entry dicts)): its metrics, its entries."""
    frames = []
    for sid, (session, entries) in rebuilt.items():
        metrics = {name: getattr(session, name) for name in feed.METRICS}
        frames.append({"type": "metrics", "session_id": str(sid), **metrics})
        frames.extend({"type": "transcript", "session_id": str(sid), "entry": entry} for entry in entries)
    return frames
