import assert from "node:assert/strict";
import { test } from "node:test";

import { Conversation } from "../../static/js/conversation.js";

// What the conversation needs of the page's world, nothing more: a location for the events
// websocket URL and a websocket that never opens (forwarding is tested in forwarder.test.mjs).
globalThis.location = { href: "http://127.0.0.1:8000/" };
globalThis.WebSocket = class { close() {} };

const storage = { getItem: () => null, setItem() {}, removeItem() {}, key: () => null, length: 0 };
const config = {
  session_id: "s1", liveavatar_session_id: "la1", session_token: "tok", liveavatar_api_url: "https://api",
  events_ws_url: "/ws/sessions/s1/events/?credential=c", events_http_url: "/sessions/s1/events?credential=c",
  interactivity: "CONVERSATIONAL",
};

// A room the avatar and its agent have already joined.
function fakeRoom() {
  return {
    remoteParticipants: new Map([["heygen", {}], ["liveavatar-agent-la1", {}]]),
    localParticipant: { identity: "visitor-la1", setMicrophoneEnabled: async () => {}, publishData: async () => {} },
    canPlaybackAudio: true,
    on() {}, off() {}, connect: async () => {}, disconnect: async () => {},
  };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

test("keep-alive is sent every 60 s while live, and no more once the session ended", async (t) => {
  const paths = [];
  t.mock.method(globalThis, "fetch", async (url) => {
    paths.push(new URL(url).pathname);
    const data = url.endsWith("/start") ? { livekit_url: "wss://room", livekit_client_token: "jwt" } : null;
    return { ok: true, status: 200, json: async () => ({ code: 1000, data }) };
  });
  // Minutes pass at the test's command; other timers run as usual.
  t.mock.timers.enable({ apis: ["setInterval"] });
  const states = [];
  // Every view method is a no-op except the state, which the test waits on.
  const view = new Proxy({ state: (state) => states.push(state) }, { get: (view, name) => view[name] ?? (() => {}) });
  const keepAlives = () => paths.filter((path) => path === "/v1/sessions/keep-alive").length;

  const conversation = new Conversation(config, view, { storage, makeRoom: async () => fakeRoom() });
  t.mock.timers.tick(120_000);
  assert.equal(keepAlives(), 0, "nothing to keep alive before the conversation starts");
  await conversation.start();
  assert.equal(conversation.state, "live");
  t.mock.timers.tick(59_999);
  assert.equal(keepAlives(), 0);
  t.mock.timers.tick(1);
  assert.equal(keepAlives(), 1);
  t.mock.timers.tick(120_000);
  assert.equal(keepAlives(), 3);

  conversation.end();
  while (!states.includes("ended")) await tick();
  t.mock.timers.tick(600_000);
  assert.equal(keepAlives(), 3);
  assert.deepEqual(paths.filter((path) => !path.endsWith("/keep-alive")), ["/v1/sessions/start", "/v1/sessions/stop"]);
});
