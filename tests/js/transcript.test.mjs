import assert from "node:assert/strict";
import { test } from "node:test";

import { parseServerEvent } from "../../static/js/events.js";
import { Transcript } from "../../static/js/transcript.js";

function play(...events) {
  const transcript = new Transcript();
  for (const [event_type, text] of events) transcript.apply(parseServerEvent({ event_type, text }));
  return transcript.entries.map(({ speaker, text, final }) => [speaker, text, final]);
}

test("user chunks are cumulative and the final replaces the partial bubble", () => {
  assert.deepEqual(play(
    ["user.speak_started"], ["user.transcription.chunk", "What"], ["user.transcription.chunk", "What are"],
    ["user.transcription_chunk", "What are your"], ["user.speak_ended"], ["user.transcription", "What are your hours?"],
  ), [["user", "What are your hours?", true]]);
});

test("avatar chunks are incremental and the final replaces them", () => {
  assert.deepEqual(play(
    ["avatar.speak_started"], ["avatar.transcription.chunk", "We're"], ["avatar.transcription.chunk", "open"],
    ["avatar.transcription.chunk", "9"], ["avatar.transcription.chunk", "to 5."],
  ), [["avatar", "We're open 9 to 5.", false]]);
  assert.deepEqual(play(
    ["avatar.speak_started"], ["avatar.transcription.chunk", "We're"], ["avatar.transcription.chunk", "open"],
    ["avatar.transcription", "We're open 9 to 5."], ["avatar.speak_ended"],
  ), [["avatar", "We're open 9 to 5.", true]]);
});

test("a final that comes first is not doubled by the chunks after it", () => {
  assert.deepEqual(play(
    ["avatar.transcription", "Hello there."], ["avatar.speak_started"],
    ["avatar.transcription.chunk", "Hello"], ["avatar.transcription.chunk", "there."], ["avatar.speak_ended"],
    ["avatar.transcription", "Second."], ["avatar.speak_started"], ["avatar.speak_ended"],
  ), [["avatar", "Hello there.", true], ["avatar", "Second.", true]]);
});

test("a final that comes after speak_ended still replaces the partial", () => {
  assert.deepEqual(play(
    ["avatar.speak_started"], ["avatar.transcription.chunk", "Hi"], ["avatar.speak_ended"],
    ["avatar.transcription", "Hi you."],
  ), [["avatar", "Hi you.", true]]);
});

test("turns keep their spoken order", () => {
  assert.deepEqual(play(
    ["avatar.transcription", "Hello."], ["avatar.speak_started"], ["avatar.speak_ended"],
    ["user.speak_started"], ["user.transcription.chunk", "Hi"], ["user.speak_ended"], ["user.transcription", "Hi"],
    ["avatar.speak_started"], ["avatar.transcription_chunk", "Nice"], ["avatar.transcription.chunk", "to meet you."],
    ["avatar.speak_ended"],
  ), [["avatar", "Hello.", true], ["user", "Hi", true], ["avatar", "Nice to meet you.", false]]);
});

test("an interrupted partial is not replaced by the next turn's final", () => {
  const transcript = new Transcript();
  for (const [event_type, text] of [["avatar.speak_started"], ["avatar.transcription.chunk", "Long"]]) {
    transcript.apply(parseServerEvent({ event_type, text }));
  }
  assert.equal(transcript.markInterrupted().text, "Long");
  const rest = [["avatar.speak_ended"], ["user.transcription", "Stop"], ["avatar.transcription", "OK."],
    ["avatar.speak_started"], ["avatar.speak_ended"]];
  for (const [event_type, text] of rest) {
    transcript.apply(parseServerEvent({ event_type, text }));
  }
  assert.deepEqual(transcript.entries.map((e) => [e.speaker, e.text, e.interrupted]),
    [["avatar", "Long", true], ["user", "Stop", false], ["avatar", "OK.", false]]);
});

test("apply returns the changed entry so a view can update one bubble", () => {
  const transcript = new Transcript();
  const first = transcript.apply(parseServerEvent({ event_type: "user.transcription.chunk", text: "a" }));
  const second = transcript.apply(parseServerEvent({ event_type: "user.transcription.chunk", text: "a b" }));
  assert.equal(first, second);
  assert.equal(transcript.apply(parseServerEvent({ event_type: "user.speak_ended" })), null);
});

test("an interrupt keeps only the words the avatar said of a final sent ahead", () => {
  const transcript = new Transcript();
  const feed = (event_type, text) => transcript.apply(parseServerEvent({ event_type, text }));
  feed("avatar.transcription", "We are open from nine to five.");
  feed("avatar.speak_started");
  feed("avatar.transcription.chunk", "We");
  feed("avatar.transcription.chunk", " are");
  const entry = transcript.markInterrupted();
  assert.equal(entry.text, "We are");
  assert.equal(entry.interrupted, true);
  feed("avatar.speak_ended");
  assert.equal(transcript.entries.length, 1);
});

test("a typed message takes its place between spoken turns without absorbing chunks", () => {
  const transcript = new Transcript();
  transcript.apply(parseServerEvent({ event_type: "user.transcription.chunk", text: "Hi" }));
  transcript.addTyped("What are your hours?");
  transcript.apply(parseServerEvent({ event_type: "user.transcription", text: "Hi there" }));
  assert.deepEqual(transcript.entries.map((e) => [e.text, Boolean(e.typed)]),
    [["Hi there", false], ["What are your hours?", true]]);
});

test("a reply sent ahead is shown only as far as it is spoken, then whole", () => {
  const transcript = new Transcript();
  const feed = (event_type, text) => transcript.apply(parseServerEvent({ event_type, text }));
  assert.equal(feed("avatar.transcription", "We are open from nine to five."), null);
  const entry = feed("avatar.speak_started");
  assert.deepEqual([entry.text, entry.speaking], ["", true]);
  assert.equal(feed("avatar.transcription.chunk", "We").text, "We");
  assert.equal(feed("avatar.transcription.chunk", " are").text, "We are");
  const ended = feed("avatar.speak_ended");
  assert.deepEqual([ended, ended.text, ended.speaking], [entry, "We are open from nine to five.", false]);
});

test("a reply interrupted before its first word is not shown", () => {
  const transcript = new Transcript();
  const feed = (event_type, text) => transcript.apply(parseServerEvent({ event_type, text }));
  feed("avatar.transcription", "We are open from nine to five.");
  assert.equal(transcript.markInterrupted(), null);
  feed("user.transcription", "Stop");
  assert.equal(feed("avatar.transcription", "OK."), null);
  assert.equal(feed("avatar.speak_started").text, "");
  assert.equal(feed("avatar.speak_ended").text, "OK.");
});
