"""Tasks that outlive the request that happened to start them (the ingest's writer, catch-up and feed, the reaper)."""

import asyncio
import contextvars
import weakref
from collections.abc import Callable
from typing import TypeVar

from asgiref.sync import SyncToAsync

from operations import logs

T = TypeVar("T")


def detached_context() -> contextvars.Context:
    """The caller's context without the request's ThreadSensitiveContext, for a long-lived task.

    A task inherits the context it is created in; asgiref refuses thread-sensitive calls tied to a
    request's context once that request has ended. Under a sync caller (async_to_sync, the test
    client) the task's database calls still run in that caller's thread.
    """
    context = contextvars.copy_context()
    context.run(SyncToAsync.thread_sensitive_context.set, None)
    context.run(SyncToAsync.deadlock_context.set, False)
    context.run(logs.unbind)  # its log lines belong to no one request or session
    return context


def per_loop(factory: Callable[[asyncio.AbstractEventLoop], T]) -> Callable[[], T]:
    """A getter of one `factory(loop)` object per running event loop: Daphne runs one loop,
    pytest-asyncio one per test, and an object holding futures or tasks belongs to its loop."""
    objects: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get() -> T:
        loop = asyncio.get_running_loop()
        if loop not in objects:
            objects[loop] = factory(loop)
        return objects[loop]

    return get
