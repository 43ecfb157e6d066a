"""The ingest: one path for the forwarding websocket, the beacon endpoint and the REST API's batch endpoint.

Each part does one job: `protocol` parses and checks a message, `event_store` stores its events
exactly once and returns after the commit (the ack), `transcript_catchup` folds them into the
transcript, and `feed` tells staff what was stored.
"""

from privacy.redaction import redact_items

from . import event_store, feed, transcript, transcript_catchup
from .models import AvatarSession
from .protocol import IngestResult, check_items


async def store_batch(session: AvatarSession, events: list) -> IngestResult:
    """Store the valid items exactly once and acknowledge them; per-item problems come back as errors.

    Raises IngestError("server_busy", 503) when the database cannot take the batch: nothing is acked.
    """
    valid, errors = check_items(events)
    result = IngestResult(errors=errors)
    if not valid:
        return result
    redact_items(session, valid)  # before anything of them is stored, here or downstream
    lowest = transcript.lowest_transcript_seq(valid)

    def committed(stored: AvatarSession | None) -> None:
        if stored is None:  # deleted meanwhile: its events were dropped
            return
        feed.publish([{"type": "session", "session": stored}])
        if lowest is not None:
            transcript_catchup.mark(stored.pk, lowest)

    await event_store.store(session.pk, valid, committed)
    result.acked = [item["seq"] for item in valid]
    return result
