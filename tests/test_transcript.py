"""Transcript rules, on a replayed recorded conversation and on the awkward orders LiveAvatar allows."""

import json
from pathlib import Path

from sessions_app import transcript

FIXTURE = Path(__file__).parent / "fixtures" / "conversation.json"
T = 1764081234000


def conversation() -> list[dict]:
    return json.loads(FIXTURE.read_text())["events"]


def item(seq, dt, event_type, source="server", **fields):
    return {"seq": seq, "ts": T + dt, "source": source, "event": {"event_type": event_type, **fields}}


# What the fixture conversation must give, utterance by utterance: (speaker, text, start, end, interrupted,
# from_chunks, latency) with times relative to the first event.
EXPECTED = [
    ("avatar", "Hello! I'm Wayne. How can I help you today?", 1000, 3500, False, False, None),
    ("user", "What are your hours?", 5000, 6500, False, False, None),
    # Interrupted after "nine to five,": the turn's text is what the visitor heard.
    ("avatar", "We're open nine to five,", 7400, 8650, True, False, 900),
    ("user", "And on Saturdays", 8500, 9800, False, True, None),
    ("avatar", "On Saturdays we open at ten.", 10400, 12400, False, False, 600),
    ("user", "Thanks, bye.", 14000, 15000, False, False, None),
    ("avatar", "Goodbye!", 16600, 17400, False, False, 1600),
]


def test_it_builds_the_recorded_conversation_exactly():
    entries = transcript.build(conversation())
    got = [
        (
            e["speaker"],
            e["text"],
            e["started_at"] - T,
            e["ended_at"] - T,
            e["interrupted"],
            e["from_chunks"],
            e["latency_ms"],
        )
        for e in entries
    ]
    assert got == EXPECTED
    assert [e["position"] for e in entries] == [1, 2, 3, 4, 5, 6, 7]
    # What the avatar meant to say is kept beside what it said, only where the two differ.
    assert [e["intended_text"] for e in entries] == [
        "",
        "",
        "We're open nine to five, Monday to Friday.",
        "",
        "",
        "",
        "",
    ]
    assert not any(e["unanswered"] for e in entries)


def test_it_measures_the_recorded_conversation_exactly():
    assert transcript.metrics(transcript.build(conversation())) == {
        "turn_count": 7,
        "interruption_count": 1,
        "median_latency_ms": 900,
        "avatar_speaking_ms": 6550,
    }


def test_chunks_are_replaced_by_the_final_not_doubled():
    items = [
        item(1, 0, "user.speak_started"),
        item(2, 100, "user.transcription.chunk", text="hel"),
        item(3, 200, "user.transcription.chunk", text="hello there"),
    ]
    [live] = transcript.build(items)
    assert (live["text"], live["from_chunks"]) == ("hello there", True)
    items += [item(4, 300, "user.speak_ended"), item(5, 400, "user.transcription", text="Hello there.")]
    [final] = transcript.build(items)
    assert (final["position"], final["text"], final["from_chunks"]) == (1, "Hello there.", False)


def test_avatar_chunks_alone_make_an_entry_and_a_stop_mid_speech_marks_it_interrupted():
    items = [
        item(1, 0, "avatar.speak_started"),
        item(2, 100, "avatar.transcription_chunk", text="Our shop"),
        item(3, 200, "avatar.transcription_chunk", text="opens at"),
        item(4, 300, "session.stopped", end_reason="MAX_DURATION_REACHED"),
    ]
    [entry] = transcript.build(items)
    assert (entry["text"], entry["from_chunks"], entry["interrupted"], entry["ended_at"]) == (
        "Our shop opens at",
        True,
        True,
        T + 300,
    )


def test_a_final_sent_after_the_speech_joins_that_turn():
    items = [
        item(1, 0, "avatar.speak_started"),
        item(2, 100, "avatar.transcription.chunk", text="Hi"),
        item(3, 200, "avatar.speak_ended"),
        item(4, 250, "avatar.transcription", text="Hi"),
    ]
    assert [(e["text"], e["from_chunks"]) for e in transcript.build(items)] == [("Hi", False)]


def test_an_interrupt_drops_queued_replies_that_were_never_spoken():
    items = [
        item(1, 0, "avatar.transcription", text="One."),
        item(2, 10, "avatar.transcription", text="Two."),
        item(3, 20, "avatar.speak_started"),
        item(4, 30, "avatar.interrupt", source="command"),
        item(5, 40, "avatar.speak_ended"),
    ]
    assert [(e["text"], e["interrupted"]) for e in transcript.build(items)] == [("One.", True)]


def typed_exchange(first_seq: int, dt: int) -> list[dict]:
    """A question typed for the avatar's LLM, its answer, then a line the page had said word for word."""
    return [
        item(first_seq, dt, "avatar.speak_response", source="command", text="What are your opening hours?"),
        item(first_seq + 1, dt + 700, "avatar.transcription", text="Nine to five."),
        item(first_seq + 2, dt + 800, "avatar.speak_started"),
        item(first_seq + 3, dt + 1500, "avatar.speak_ended"),
        item(first_seq + 4, dt + 2000, "avatar.speak_text", source="command", text="Anything else?"),
        item(first_seq + 5, dt + 2100, "avatar.transcription", text="Anything else?"),
        item(first_seq + 6, dt + 2150, "avatar.speak_started"),
        item(first_seq + 7, dt + 2600, "avatar.speak_ended"),
    ]


def test_a_typed_question_is_the_visitors_utterance_and_the_answers_latency_counts_from_it():
    entries = transcript.build(typed_exchange(1, 0))
    assert [(e["speaker"], e["text"], e["from_chunks"], e["latency_ms"]) for e in entries] == [
        ("user", "What are your opening hours?", False, None),
        ("avatar", "Nine to five.", False, 800),
        ("avatar", "Anything else?", False, None),
    ]  # speak_text: the page's words, not the visitor's


def test_silence_without_words_makes_no_entry():
    items = [
        item(1, 0, "user.speak_started"),
        item(2, 100, "user.speak_ended"),
        item(3, 200, "avatar.speak_started"),
        item(4, 300, "avatar.speak_ended"),
    ]
    assert transcript.build(items) == []
    assert transcript.metrics([])["median_latency_ms"] is None


def incremental(batches: list[list[dict]]) -> list[list[dict]]:
    """What ingest keeps: entries rebuilt after every batch from the last checkpoint only."""
    seen, entries, checkpoint, results = [], [], (0, 0), []
    for batch in batches:
        seen += batch
        seq, position = checkpoint
        floor = entries[position - 1]["started_at"] if position else None
        built = transcript.build_after([i for i in seen if i["seq"] > seq], position, floor)
        if built is None:  # an entry sorts before the checkpoint: start over
            position, built = 0, transcript.build_after(seen)
        new, found = built
        entries = entries[:position] + new
        checkpoint = found or checkpoint
        results.append(entries)
    return results


def test_incremental_builds_equal_the_full_build_at_every_batch_boundary():
    events = conversation()
    # one batch boundary anywhere
    for cut in range(len(events) + 1):
        _, both = incremental([events[:cut], events[cut:]])
        assert both == transcript.build(events), cut
    # every event its own batch: after each one the transcript equals the full build so far
    for count, entries in enumerate(incremental([[e] for e in events]), start=1):
        assert entries == transcript.build(events[:count]), count
    # batches of every size
    for size in range(2, 12):
        results = incremental([events[i : i + size] for i in range(0, len(events), size)])
        assert results[-1] == transcript.build(events), size
    # and with a typed question after the spoken ones, before the end
    spoken, end = events[:-3], events[-3:]
    typed = typed_exchange(spoken[-1]["seq"] + 1, spoken[-1]["ts"] - T + 1000)
    events = spoken + typed + [{**e, "seq": e["seq"] + len(typed), "ts": typed[-1]["ts"] + 500} for e in end]
    for count, entries in enumerate(incremental([[e] for e in events]), start=1):
        assert entries == transcript.build(events[:count]), count


def test_the_fixture_has_checkpoints_so_incremental_builds_stay_short():
    events = conversation()
    entries, checkpoint = transcript.build_after(events)
    assert checkpoint is not None and 0 < checkpoint[1] <= len(entries)
    # a build from the checkpoint folds only what follows it and numbers entries after it
    seq, position = checkpoint
    rest, _ = transcript.build_after(
        [e for e in events if e["seq"] > seq], position, entries[position - 1]["started_at"]
    )
    assert entries[:position] + rest == entries


def test_an_entry_before_the_checkpoint_asks_for_a_full_build():
    items = [
        item(1, 500, "user.speak_started"),
        item(2, 600, "user.speak_ended"),
        item(3, 700, "user.transcription", text="Hi"),
    ]
    assert transcript.build_after(items, position=3, floor=T + 800) is None


def test_a_question_typed_while_the_avatar_speaks_is_timed_from_the_end_of_that_speech():
    items = [
        item(1, 0, "avatar.transcription", text="Let me tell you all about our shop and its long history."),
        item(2, 100, "avatar.speak_started"),
        item(3, 500, "avatar.speak_response", source="command", text="When do you open?"),
        item(4, 3000, "avatar.speak_ended"),
        item(5, 3100, "avatar.transcription", text="At nine."),
        item(6, 3400, "avatar.speak_started"),
        item(7, 4000, "avatar.speak_ended"),
    ]
    answer = transcript.build(items)[-1]
    assert (answer["text"], answer["latency_ms"]) == ("At nine.", 400)  # not 2,900 from the typing


def test_a_question_typed_while_the_avatar_is_silent_is_timed_from_the_typing():
    items = [
        item(1, 0, "avatar.speak_response", source="command", text="When do you open?"),
        item(2, 700, "avatar.transcription", text="At nine."),
        item(3, 900, "avatar.speak_started"),
        item(4, 1500, "avatar.speak_ended"),
    ]
    assert transcript.build(items)[-1]["latency_ms"] == 900


def test_a_question_dropped_by_an_interrupt_is_unanswered_and_not_timed():
    items = [
        item(1, 0, "user.speak_started"),
        item(2, 800, "user.speak_ended"),
        item(3, 900, "user.transcription", text="What are your hours?"),
        item(4, 1200, "avatar.interrupt", source="command"),
        item(5, 5000, "avatar.speak_text", source="command", text="Sorry, go ahead."),
        item(6, 5000, "avatar.transcription", text="Sorry, go ahead."),
        item(7, 5300, "avatar.speak_started"),
        item(8, 6000, "avatar.speak_ended"),
    ]
    question, reply = transcript.build(items)
    assert question["unanswered"] is True
    assert reply["latency_ms"] is None  # not 4,500 ms of "latency" after the dropped question
    assert transcript.metrics([question, reply])["median_latency_ms"] is None


def test_an_answered_question_is_not_unanswered():
    entries = transcript.build(conversation())
    assert [e["unanswered"] for e in entries if e["speaker"] == "user"] == [False, False, False]
