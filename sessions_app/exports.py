"""A transcript as plain text and as WebVTT (https://www.w3.org/TR/webvtt1/)."""

from datetime import datetime, timedelta

# An utterance with no recorded end is shown this long in a WebVTT cue.
DEFAULT_CUE = timedelta(seconds=2)


def as_text(entries) -> str:
    lines = []
    for entry in entries:
        mark = " [interrupted]" if entry.interrupted else " [unanswered]" if entry.unanswered else ""
        lines.append(f"{entry.speaker_words}: {entry.text}{mark}")
    return "\n".join(lines) + "\n" if lines else ""


def _timestamp(offset: timedelta) -> str:
    ms = max(0, round(offset.total_seconds() * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return f"{hours:02}:{minutes:02}:{seconds:02}.{ms:03}"


def _escape(text: str) -> str:
    # Cue text is markup: these three would be read as tags, entities or a timing arrow.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def as_vtt(entries, start: datetime) -> str:
    """Cues timed from `start` (the session's start); an entry without times follows the one before."""
    cues = ["WEBVTT", ""]
    cursor = start
    for number, entry in enumerate(entries, 1):
        begin = max(entry.started_at or cursor, start)
        end = entry.ended_at if entry.ended_at and entry.ended_at > begin else begin + DEFAULT_CUE
        text = " ".join(_escape(entry.text).splitlines())  # a blank line would end the cue
        cues += [
            str(number),
            f"{_timestamp(begin - start)} --> {_timestamp(end - start)}",
            f"<v {entry.get_speaker_display()}>{text}",
            "",
        ]
        cursor = end
    return "\n".join(cues)
