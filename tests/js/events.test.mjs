import assert from "node:assert/strict";
import { test } from "node:test";

import { describeEndReason, parseServerEvent } from "../../static/js/events.js";

const bytes = (object) => new TextEncoder().encode(JSON.stringify(object));

test("it parses bytes, strings and objects", () => {
  const event = { event_id: "e1", event_type: "user.transcription", session_id: "s", text: "Hi" };
  for (const payload of [bytes(event), JSON.stringify(event), event]) {
    const parsed = parseServerEvent(payload);
    assert.equal(parsed.type, "user.transcription");
    assert.equal(parsed.text, "Hi");
    assert.equal(parsed.known, true);
    assert.deepEqual(parsed.raw, event);
  }
});

test("it accepts both chunk spellings", () => {
  assert.equal(parseServerEvent({ event_type: "user.transcription_chunk", text: "a" }).type, "user.transcription.chunk");
  assert.equal(parseServerEvent({ event_type: "avatar.transcription_chunk", text: "a" }).type, "avatar.transcription.chunk");
  assert.equal(parseServerEvent({ event_type: "avatar.transcription.chunk", text: "a" }).type, "avatar.transcription.chunk");
});

test("it reads the end reason under either name and either event name", () => {
  assert.equal(parseServerEvent({ event_type: "session.stopped", end_reason: "IDLE_TIMEOUT" }).endReason, "IDLE_TIMEOUT");
  const fork = parseServerEvent({ event_type: "session_stopped", stop_reason: "MAX_DURATION_REACHED" });
  assert.equal(fork.type, "session.stopped");
  assert.equal(fork.endReason, "MAX_DURATION_REACHED");
  assert.equal(parseServerEvent({ event_type: "session.stopped" }).endReason, "UNKNOWN");
});

test("it keeps unknown events as received", () => {
  const raw = { event_type: "session.state_updated", state: "x", extra: [1] };
  const parsed = parseServerEvent(bytes(raw));
  assert.equal(parsed.known, false);
  assert.equal(parsed.type, "session.state_updated");
  assert.deepEqual(parsed.raw, raw);
});

test("it returns null for payloads that are not JSON objects", () => {
  assert.equal(parseServerEvent("not json"), null);
  assert.equal(parseServerEvent("[1,2]"), null);
  assert.equal(parseServerEvent("3"), null);
});

test("it words end reasons for the visitor", () => {
  assert.match(describeEndReason("MAX_DURATION_REACHED"), /time limit/);
  assert.match(describeEndReason("SOMETHING_NEW"), /SOMETHING_NEW/);
  // Who ended it, in words: never "You ended" when someone else did.
  assert.equal(describeEndReason("STAFF_ENDED"), "A member of staff ended the conversation.");
  for (const reason of ["API_ENDED", "ORPHANED", "BUDGET_EXCEEDED", "MAX_DURATION", "START_FAILED"]) {
    assert.doesNotMatch(describeEndReason(reason), /You ended|\(/, reason);
  }
});
