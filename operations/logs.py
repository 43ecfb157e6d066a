"""Log lines that say which request and which session they belong to, as JSON when LOG_FORMAT=json.

The request id and the session id travel in context variables: set by RequestContextMiddleware for
HTTP requests, by `bind_session` where a websocket or a URL names a session. asgiref carries them
into the threads of sync_to_async. Secrets from the settings never reach a log line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
import warnings
from datetime import UTC, datetime

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
SESSION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("session_id", default=None)

# An X-Request-ID from the proxy in front is kept when it looks like one; anything else is replaced.
_REQUEST_ID_FORMAT = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# Settings whose values are secrets: never written to a log, whatever logs them.
_SECRET_NAMES = re.compile(r"SECRET|API_KEY|TOKEN|PASSWORD")


def bind_session(session_id) -> None:
    """Log lines from here on (in this request, socket or task) carry this session id."""
    SESSION_ID.set(str(session_id) if session_id else None)


def unbind() -> None:
    """A long-lived task started from a request belongs to no request or session of its own."""
    REQUEST_ID.set(None)
    SESSION_ID.set(None)


def _secrets() -> list[str]:
    with warnings.catch_warnings():  # reading a deprecated setting (EMAIL_HOST_PASSWORD) warns
        warnings.simplefilter("ignore")
        values = [getattr(settings, name) for name in dir(settings) if name.isupper() and _SECRET_NAMES.search(name)]
    return sorted({v for v in values if isinstance(v, str) and len(v) >= 8}, key=len, reverse=True)


class RedactSecrets(logging.Filter):
    """Replaces any secret of the settings (the LiveAvatar key, SECRET_KEY, tokens) in a line's text."""

    _values: list[str] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self._values is None:
            RedactSecrets._values = _secrets()
        message = record.getMessage()
        for value in self._values:
            if value in message:
                message = message.replace(value, "[redacted]")
        record.msg, record.args = message, None
        return True


class ContextFields(logging.Filter):
    """Adds request_id and session_id to the record (an explicit `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        if getattr(record, "session_id", None) is None:
            record.session_id = SESSION_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, process, request_id, session_id (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "request_id": getattr(record, "request_id", None),
            "session_id": getattr(record, "session_id", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """The readable default, with the request and session where there is one."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = [f"{name}={value}" for name in ("request_id", "session_id") if (value := getattr(record, name, None))]
        return f"{text} [{' '.join(ids)}]" if ids else text


class RequestContextMiddleware:
    """Gives every request an id (X-Request-ID, kept from the proxy when sane), echoed in the response."""

    sync_capable = async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def _begin(self, request) -> str:
        given = request.headers.get("X-Request-ID", "")
        request_id = given if _REQUEST_ID_FORMAT.match(given) else uuid.uuid4().hex
        REQUEST_ID.set(request_id)
        SESSION_ID.set(None)
        return request_id

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        request_id = self._begin(request)
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response

    async def __acall__(self, request):
        request_id = self._begin(request)
        response = await self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
