"""Forwarded events → transcript entries and per-turn metrics. Pure functions: no database, no clock.

Input is the forwarding protocol's items in seq order: `{"seq", "ts" (ms since epoch), "source", "event"}`.
LiveAvatar's event order is only loosely specified (API.md §3.5, §6), so the rules here accept both
chunk spellings, a final transcription before or after speech, and interrupts that may or may not be
followed by `avatar.speak_ended`.
"""

import re
import statistics
from dataclasses import dataclass, field

USER_CHUNKS = {"user.transcription.chunk", "user.transcription_chunk"}
AVATAR_CHUNKS = {"avatar.transcription.chunk", "avatar.transcription_chunk"}
STOPS = {"session.stopped", "session_stopped", "client.stopped"}
# A question the visitor typed for the avatar's LLM (a command the page sent): LiveAvatar sends no
# transcription of it, so it is the visitor's utterance itself.
TYPED_QUESTION = "avatar.speak_response"
# The page's copy of a command relayed by live control carries the control command's id; the line
# it causes (the avatar saying the text, or the question asked) keeps it.
SAID_FOR_OPERATOR = "avatar.speak_text"
# Events that can change the transcript; a batch without any of them leaves it as it is.
TRANSCRIPT_EVENTS = (
    USER_CHUNKS
    | AVATAR_CHUNKS
    | STOPS
    | {
        "user.speak_started",
        "user.speak_ended",
        "user.transcription",
        "avatar.speak_started",
        "avatar.speak_ended",
        "avatar.transcription",
        "avatar.interrupt",
        TYPED_QUESTION,
        SAID_FOR_OPERATOR,
    }
)


def lowest_transcript_seq(items: list[dict]) -> int | None:
    """The lowest seq among forwarded items that can change the transcript, or None."""
    return min((i["seq"] for i in items if i["event"]["event_type"] in TRANSCRIPT_EVENTS), default=None)


@dataclass
class _Turn:
    speaker: str
    order: int  # creation order, breaks ties between equal start times
    first_ts: int | None = None
    started_at: int | None = None
    ended_at: int | None = None
    final: str | None = None
    chunks: list[str] = field(default_factory=list)
    interrupted: bool = False
    latency_ms: int | None = None
    unanswered: bool = False  # a visitor's turn whose answer an interrupt or the end dropped
    control_id: str | None = None  # sent through live control

    @property
    def speaking(self) -> bool:
        return self.started_at is not None and self.ended_at is None

    def text(self) -> str:
        """What was said: for an avatar turn cut short, the words spoken up to the cut."""
        if self.interrupted and self.speaker == "avatar" and self.chunks:
            return _join_increments(self.chunks)
        if self.final is not None:
            return self.final.strip()
        if self.speaker == "user":  # user chunks are cumulative: the last one holds it all
            return self.chunks[-1].strip() if self.chunks else ""
        return _join_increments(self.chunks)

    def intended_text(self) -> str:
        """What the avatar meant to say, when it differs from what it said."""
        if self.final is None or self.final.strip() == self.text():
            return ""
        return self.final.strip()


def _join_increments(chunks: list[str]) -> str:
    return re.sub(r"\s+", " ", " ".join(chunk.strip() for chunk in chunks)).strip()


def _words(text: str) -> int:
    return len(text.split())


class _Builder:
    def __init__(self):
        self.turns: list[_Turn] = []
        self.user: _Turn | None = None  # the user turn still waiting for its final transcription
        self.avatar_queue: list[_Turn] = []  # avatar turns transcribed but not yet spoken
        self.avatar_speaking: _Turn | None = None
        self.avatar_last: _Turn | None = None  # the avatar turn that spoke last
        # For latency: when the visitor's turn ended (or, if the avatar was still speaking then, when
        # it stopped: an answer cannot start before), and that turn, unanswered until the avatar speaks.
        self.user_ended_at: int | None = None
        self.waiting: _Turn | None = None
        self.wait_for_avatar = False
        self.next_avatar_control: str | None = None  # an operator's speak_text, until its turn exists

    def new(self, speaker: str, ts: int) -> _Turn:
        turn = _Turn(speaker=speaker, order=len(self.turns), first_ts=ts)
        if speaker == "avatar" and self.next_avatar_control:
            turn.control_id, self.next_avatar_control = self.next_avatar_control, None
        self.turns.append(turn)
        return turn

    # user side
    def user_turn(self, ts: int) -> _Turn:
        if self.user is None:
            self.user = self.new("user", ts)
        return self.user

    def on_user_speak_started(self, ts):
        if self.user is not None and self.user.ended_at is not None:
            self.user = None  # the previous turn never got a final: its chunks stand
        turn = self.user_turn(ts)
        turn.started_at = turn.started_at or ts

    def on_user_speak_ended(self, ts):
        turn = self.user_turn(ts)
        turn.ended_at = ts
        self.await_answer(turn, ts)

    def await_answer(self, turn: _Turn, ts: int):
        self.waiting, self.user_ended_at = turn, ts
        self.wait_for_avatar = self.avatar_speaking is not None

    def on_user_chunk(self, ts, text):
        self.user_turn(ts).chunks.append(text)

    def on_user_final(self, ts, text):
        self.user_turn(ts).final = text
        self.user = None

    def on_typed(self, ts, text, control_id=None):
        """A typed question: an utterance of its own, said at once; the avatar's answer latency counts from it."""
        turn = self.new("user", ts)
        turn.started_at = turn.ended_at = ts
        turn.final = text
        turn.control_id = control_id
        self.await_answer(turn, ts)

    # avatar side
    def on_avatar_final(self, ts, text):
        turn = self.avatar_speaking
        if (
            turn is None
            and self.avatar_last is not None
            and self.avatar_last.final is None
            and not self.avatar_queue
            and self.user is None
        ):
            turn = self.avatar_last  # final sent after the speech it belongs to
        if turn is None or turn.final is not None:
            turn = self.new("avatar", ts)
            self.avatar_queue.append(turn)
        turn.final = text

    def on_avatar_speak_started(self, ts):
        self.on_avatar_speak_ended(ts)  # a new start closes a turn whose end was never sent
        turn = self.avatar_queue.pop(0) if self.avatar_queue else self.new("avatar", ts)
        turn.started_at = ts
        if self.user_ended_at is not None:
            turn.latency_ms = max(0, ts - self.user_ended_at)
        self.user_ended_at = self.waiting = None
        self.wait_for_avatar = False
        self.avatar_speaking = self.avatar_last = turn

    def on_avatar_chunk(self, ts, text):
        turn = self.avatar_speaking or (self.avatar_queue[0] if self.avatar_queue else None)
        if turn is None:
            turn = self.new("avatar", ts)
            self.avatar_queue.append(turn)
        turn.chunks.append(text)

    def on_avatar_speak_ended(self, ts, cut_short=False):
        turn = self.avatar_speaking
        if turn is None:
            return
        turn.ended_at = ts
        # Speech that stopped before the text was all said was cut short (chunks are what was said).
        if cut_short or (
            turn.final is not None and turn.chunks and _words(_join_increments(turn.chunks)) < _words(turn.final)
        ):
            turn.interrupted = True
        self.avatar_speaking = None
        if self.wait_for_avatar:  # the visitor's turn ended while this speech went on: time from here
            self.user_ended_at, self.wait_for_avatar = ts, False

    def on_interrupt(self, ts):
        if self.avatar_speaking is not None:
            self.avatar_speaking.interrupted = True
        # The interrupt also clears everything queued: those texts are never spoken.
        for turn in self.avatar_queue:
            self.turns.remove(turn)
        self.avatar_queue.clear()
        self.drop_question()

    def drop_question(self):
        """The visitor's pending question will never be answered: shown as such, not timed."""
        if self.waiting is not None:
            self.waiting.unanswered = True
        self.user_ended_at = self.waiting = None
        self.wait_for_avatar = False

    def on_stop(self, ts):
        self.on_avatar_speak_ended(ts, cut_short=True)
        self.drop_question()

    def quiet(self) -> bool:
        """Nothing open: the turns so far can no longer change, and a fresh builder would fold
        whatever follows exactly as this one does (a checkpoint for incremental builds)."""
        return (
            self.user is None
            and not self.avatar_queue
            and self.avatar_speaking is None
            and self.user_ended_at is None
            and self.waiting is None
            and self.next_avatar_control is None
            and (self.avatar_last is None or self.avatar_last.final is not None)
        )


def _fold(items: list[dict]) -> tuple[list[_Turn], list[tuple[int, int]]]:
    """The turns, and the quiet points: (seq, how many turns existed then) after each item that left nothing open."""
    builder = _Builder()
    quiet = []
    for item in items:
        event = item.get("event") or {}
        kind = event.get("event_type", "")
        ts = item.get("ts") or 0
        text = event.get("text") if isinstance(event.get("text"), str) else ""
        command = item.get("source") == "command"
        control_id = event.get("control_id") if command and isinstance(event.get("control_id"), str) else None
        if kind == "user.speak_started":
            builder.on_user_speak_started(ts)
        elif kind == "user.speak_ended":
            builder.on_user_speak_ended(ts)
        elif kind in USER_CHUNKS:
            builder.on_user_chunk(ts, text)
        elif kind == "user.transcription":
            builder.on_user_final(ts, text)
        elif kind == "avatar.transcription":
            builder.on_avatar_final(ts, text)
        elif kind in AVATAR_CHUNKS:
            builder.on_avatar_chunk(ts, text)
        elif kind == "avatar.speak_started":
            builder.on_avatar_speak_started(ts)
        elif kind == "avatar.speak_ended":
            builder.on_avatar_speak_ended(ts)
        elif kind == "avatar.interrupt" and command:
            builder.on_interrupt(ts)
        elif kind == TYPED_QUESTION and command and text.strip():
            builder.on_typed(ts, text, control_id)
        elif kind == SAID_FOR_OPERATOR and control_id:
            builder.next_avatar_control = control_id
        elif kind in STOPS:
            builder.on_stop(ts)
        if builder.quiet():
            quiet.append((item.get("seq") or 0, len(builder.turns)))
    return builder.turns, quiet


def _key(turn: _Turn) -> int:
    return turn.started_at if turn.started_at is not None else turn.first_ts


def build(items: list[dict]) -> list[dict]:
    """Transcript entries in spoken order: one per utterance that has any text.

    An entry is `from_chunks` when no final transcription arrived (yet); such an entry is replaced in
    place when the final comes, so a live view never shows one utterance twice.
    """
    return build_after(items)[0]


def build_after(
    items: list[dict], position: int = 0, floor: int | None = None
) -> tuple[list[dict], tuple[int, int] | None] | None:
    """`build` for the events that follow a checkpoint, whose `position` entries are already built.

    Returns (entries numbered from position + 1, the new checkpoint or None), or None when an entry
    here would sort before `floor` (the start time of the last entry before the checkpoint): then
    only a build from the first event is right. A checkpoint is (seq, entries before it): the last
    quiet point of the fold after which every entry sorts after the ones before it. Folding the
    events after a checkpoint from `position` gives exactly what `build` of all events gives.
    """
    turns, quiet = _fold(items)
    # Sort keys as `build` orders by; a turn's `order` only compares within one fold.
    spoken = [(i, (_key(t), t.order)) for i, t in enumerate(turns) if t.text()]
    if floor is not None and any(key[0] <= floor for _, key in spoken):
        return None  # an entry ties with or precedes one before the checkpoint
    checkpoint = None
    if quiet:
        prefix_max = []
        for _, key in spoken:
            prefix_max.append(key if not prefix_max else max(prefix_max[-1], key))
        after_min, j = None, len(spoken)  # spoken[:j]: the turns before the quiet point looked at
        for seq, count in reversed(quiet):
            while j and spoken[j - 1][0] >= count:
                j -= 1
                after_min = spoken[j][1] if after_min is None else min(after_min, spoken[j][1])
            if after_min is None or not j or prefix_max[j - 1] <= after_min:
                checkpoint = (seq, position + j)
                break
    ordered = sorted((t for t in turns if t.text()), key=lambda t: (_key(t), t.order))
    entries = [
        {
            "position": position,
            "speaker": turn.speaker,
            "text": turn.text(),
            "started_at": turn.started_at if turn.started_at is not None else turn.first_ts,
            "ended_at": turn.ended_at,
            "interrupted": turn.interrupted,
            "intended_text": turn.intended_text() if turn.speaker == "avatar" else "",
            "unanswered": turn.unanswered,
            "from_chunks": turn.final is None,
            "latency_ms": turn.latency_ms if turn.speaker == "avatar" else None,
            "control_id": turn.control_id,
        }
        for position, turn in enumerate(ordered, start=position + 1)
    ]
    return entries, checkpoint


def metrics(entries: list[dict]) -> dict:
    """Per-session figures from transcript entries (as `build` returns them, or model rows as dicts)."""
    avatar = [e for e in entries if e["speaker"] == "avatar"]
    latencies = [e["latency_ms"] for e in avatar if e.get("latency_ms") is not None]
    speaking = sum(
        _ms(e["ended_at"]) - _ms(e["started_at"])
        for e in avatar
        if e["started_at"] is not None and e["ended_at"] is not None
    )
    return {
        "turn_count": len(entries),
        "interruption_count": sum(1 for e in avatar if e["interrupted"]),
        "median_latency_ms": round(statistics.median(latencies)) if latencies else None,
        "avatar_speaking_ms": max(0, round(speaking)),
    }


def _ms(value) -> float:
    """Times are ms integers from `build`, or datetimes from the database."""
    return value.timestamp() * 1000 if hasattr(value, "timestamp") else value


def normalized(text: str) -> str:
    """Text compared loosely: what LiveAvatar stored may differ from what was forwarded in case and punctuation."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
