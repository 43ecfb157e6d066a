import assert from "node:assert/strict";
import { test } from "node:test";

import { Conversation } from "../../static/js/conversation.js";

// The page's world as in conversation-keepalive.test.mjs: no real socket, a room already joined
// whose published data the test reads.
globalThis.location = { href: "http://127.0.0.1:8000/" };
globalThis.WebSocket = class { close() {} };

const storage = { getItem: () => null, setItem() {}, removeItem() {}, key: () => null, length: 0 };
const config = {
  session_id: "s1", liveavatar_session_id: "la1", session_token: "tok", liveavatar_api_url: "https://api",
  events_ws_url: "/ws/sessions/s1/events/?credential=c", events_http_url: "/sessions/s1/events?credential=c",
  interactivity: "CONVERSATIONAL", mark_operator_lines: true,
};

async function liveConversation(t) {
  t.mock.method(globalThis, "fetch", async (url) => {
    const data = url.endsWith("/start") ? { livekit_url: "wss://room", livekit_client_token: "jwt" } : null;
    return { ok: true, status: 200, json: async () => ({ code: 1000, data }) };
  });
  const published = [];
  const room = {
    remoteParticipants: new Map([["heygen", {}], ["liveavatar-agent-la1", {}]]),
    localParticipant: {
      identity: "visitor-la1", setMicrophoneEnabled: async () => {},
      publishData: async (bytes, { topic }) => published.push({ topic, ...JSON.parse(new TextDecoder().decode(bytes)) }),
    },
    handlers: {}, canPlaybackAudio: true, on(name, handler) { this.handlers[name] = handler; }, off() {}, connect: async () => {}, disconnect: async () => {},
  };
  const shown = [];
  const view = new Proxy({ transcript: (entry) => shown.push({ ...entry }) }, { get: (v, name) => v[name] ?? (() => {}) });
  const conversation = new Conversation(config, view, { storage, makeRoom: async () => room });
  await conversation.start();
  t.after(() => { conversation.end(); });
  const forwarded = () => conversation.forwarder.queue.pending.map((record) => record.event);
  return { conversation, room, published, shown, forwarded };
}

const control = (fields) => ({ type: "control", command_id: "c1", session_id: "s1", text: "", sender: "staff", ...fields });

test("a speak_text command is published on agent-control with a fresh event_id; the forwarded copy says which command", async (t) => {
  const { conversation, published, forwarded } = await liveConversation(t);
  const answer = await conversation.control(control({ command: "speak_text", text: "Say this" }));
  assert.equal(answer.ok, true);
  assert.deepEqual(published, [{ topic: "agent-control", event_id: answer.event_id, event_type: "avatar.speak_text", text: "Say this" }]);
  assert.deepEqual(forwarded().at(-1), { event_id: answer.event_id, event_type: "avatar.speak_text", text: "Say this", control_id: "c1" });
  // The line it causes is marked for the visitor.
  conversation.transcript.apply({ type: "avatar.transcription", text: "Say this" });
  assert.equal(conversation.transcript.entries.at(-1).sentBy, "staff");
});

test("the page refuses a command for another session, and answers each command once", async (t) => {
  const { conversation, published } = await liveConversation(t);
  assert.deepEqual(await conversation.control(control({ command: "interrupt", session_id: "s2" })),
    { ok: false, message: "This page runs another session." });
  assert.equal(await conversation.control(control({ command: "interrupt", session_id: "s2" })), null);
  assert.deepEqual(published, []);
});

test("a command once the conversation is over is refused with the reason", async (t) => {
  const { conversation } = await liveConversation(t);
  const fetched = [];
  globalThis.fetch.mock.mockImplementation(async (url) => { fetched.push(url); return { ok: true, json: async () => ({ code: 1000 }) }; });
  assert.equal((await conversation.control(control({ command_id: "c9", command: "end" }))).ok, true);
  assert.match(conversation.state, /^end(ing|ed)$/);
  assert.deepEqual(await conversation.control(control({ command_id: "c10", command: "interrupt" })),
    { ok: false, message: `The conversation is not live (it is ${conversation.state}).` });
  // The server stops it at LiveAvatar: the page does not.
  assert.deepEqual(fetched, []);
});

test("where the site does not mark operator lines, the visitor sees the avatar's line as any other", async (t) => {
  config.mark_operator_lines = false;
  t.after(() => { config.mark_operator_lines = true; });
  const { conversation } = await liveConversation(t);
  await conversation.control(control({ command: "speak_text", text: "Say this" }));
  conversation.transcript.apply({ type: "avatar.transcription", text: "Say this" });
  assert.equal(conversation.transcript.entries.at(-1).sentBy, undefined);
  await conversation.control(control({ command_id: "c2", command: "speak_response", text: "Hours?" }));
  assert.equal(conversation.transcript.entries.some((entry) => entry.text === "Hours?"), false);
});

test("a server event delivered again (a room that rejoined) is recorded and shown once", async (t) => {
  const { room, shown, forwarded } = await liveConversation(t);
  const before = forwarded().length;
  const event = { event_id: "e1", event_type: "avatar.transcription.chunk", session_id: "la1", text: "Hello" };
  const payload = new TextEncoder().encode(JSON.stringify(event));
  room.handlers.dataReceived(payload, undefined, undefined, "agent-response");
  room.handlers.dataReceived(payload, undefined, undefined, "agent-response");
  assert.deepEqual(forwarded().slice(before), [event]);
  assert.equal(shown.at(-1).text, "Hello");
});
