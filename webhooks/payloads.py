"""What each event's payload holds: {"type", "timestamp", "data"} (documented in the README).

Sessions and transcript entries have the REST API's shapes, serialised as the API serialises them.
"""

import json

from ninja.responses import NinjaJSONEncoder

from privacy.redaction import count_placeholders
from sessions_app import transcript_rows
from sessions_app.models import AvatarSession
from sessions_app.schemas import SessionOut, TranscriptEntryOut

METRICS = ("turn_count", "interruption_count", "median_latency_ms", "avatar_speaking_ms")


def build(event_type: str, session_id, occurred_at) -> dict:
    """The payload of an event of a session, from what is stored now (redacted text only)."""
    if event_type != "session.started":
        transcript_rows.bring_up_to_date([session_id])
    session = AvatarSession.objects.get(pk=session_id)
    data = {"session": SessionOut.model_validate(session).model_dump()}
    if event_type != "session.started":
        entries = list(session.transcript.all())
        if event_type == "session.ended":
            data["end_reason"] = session.end_reason
        data["metrics"] = {name: getattr(session, name) for name in METRICS} | {
            "duration_seconds": session.duration_seconds
        }
        data["transcript"] = [TranscriptEntryOut.model_validate(e).model_dump() for e in entries]
        data["redactions"] = count_placeholders(text for e in entries for text in (e.text, e.intended_text))
    payload = {"type": event_type, "timestamp": occurred_at, "data": data}
    return json.loads(json.dumps(payload, cls=NinjaJSONEncoder))
