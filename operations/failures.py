"""Failed LiveAvatar calls, remembered across processes for the dashboard (the client calls `record`)."""

from __future__ import annotations

import logging

from . import metrics

log = logging.getLogger(__name__)


async def record(method: str, path: str, error) -> None:
    """Store one failed call (a LiveAvatarError); a database that cannot take it costs only the record."""
    from .models import LiveAvatarFailure  # the client is imported before the app registry is ready

    try:
        await LiveAvatarFailure.objects.acreate(
            endpoint=metrics.endpoint_of(method, path)[:128],
            kind=error.kind,
            status=error.status,
            message=error.message[:2000],
            retry_after=error.retry_after,
        )
    except Exception:  # noqa: BLE001 - no database here (a test's stand-in), or a database outage
        log.debug("could not record a LiveAvatar failure", exc_info=True)
