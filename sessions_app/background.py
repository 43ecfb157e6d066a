"""Tasks that outlive the request that happened to start them (the ingest writer, the reaper)."""

import contextvars

from asgiref.sync import SyncToAsync

from operations import logs


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
