"""Turns at SQLite's one write lock for this process's writers (the event store, the transcript rebuilds).

A SQLite connection that finds the lock taken sleeps before trying again (1, 2, 5 ms...), which
under load costs the ingest more than waiting its turn here. Other databases lock rows, not files.
"""

import contextlib
import threading

from django.db import connection

_lock = threading.Lock()


def write_turn():
    """A context manager: this thread's turn to write (on SQLite; on other databases no wait)."""
    return _lock if connection.vendor == "sqlite" else contextlib.nullcontext()
