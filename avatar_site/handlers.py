"""Django's ASGI handler, with each request's sync work on a reused thread instead of a new one."""

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connections, reset_queries

# Idle request threads kept for reuse; beyond this many, a finished request's thread is let go.
MAX_IDLE_THREADS = 16


class ReusedThreadASGIHandler(ASGIHandler):
    """Stock Django runs every request in a ThreadSensitiveContext of its own, so the request's sync
    calls (signal receivers, response.close(), sync views, the ORM) share one thread; it makes that
    thread for each request and joins it afterwards. Starting a thread blocks the event loop until
    the thread runs, and the first sync call of a request is request_started's receivers, before
    the view: every request paid for a new thread in its latency (0.5 ms of the visitor page's,
    measured) and every process in CPU (a quarter of a static file's, two fifths of /healthz's).

    Here a request takes a finished request's idle thread (asgiref's ThreadSensitiveContext with an
    executor the caller owns). Like WSGI worker threads, a reused thread keeps its database connection
    between requests (CONN_MAX_AGE).

    Django checks that connection (close_old_connections) and clears its query log (reset_queries)
    when a request starts and when it finishes. Here both signals run on the same thread, one right
    after the other between two requests, so the checks run once, when a request finishes: an async
    view that needs no sync call then reaches its code without a hop to the thread and back.
    """

    def __init__(self):
        super().__init__()
        self._idle: list[ThreadPoolExecutor] = []
        request_started.disconnect(close_old_connections)
        request_started.disconnect(reset_queries)
        request_finished.connect(reset_queries)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self._idle.pop() if self._idle else ThreadPoolExecutor(1, thread_name_prefix="request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            if len(self._idle) < MAX_IDLE_THREADS:
                self._idle.append(executor)
            else:
                # The thread's own connections are closed in it (they are thread-local), then it ends.
                executor.submit(connections.close_all)
                executor.shutdown(wait=False)
