import assert from "node:assert/strict";
import { test } from "node:test";

import { LiveAvatarApi, LiveAvatarError } from "../../static/js/liveavatar-api.js";

function fakeFetch(answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, ...init, body: JSON.parse(init.body) });
    const [status, body] = answers.shift() ?? [200, { code: 1000, data: null }];
    return { ok: status < 300, status, json: async () => body };
  };
  return { fetch, calls };
}

test("start sends the session token as Bearer and returns the room", async () => {
  const room = { livekit_url: "wss://x", livekit_client_token: "t", max_session_duration: 60 };
  const { fetch, calls } = fakeFetch([[201, { code: 1000, data: room }]]);
  assert.deepEqual(await new LiveAvatarApi("https://api/", "tok", fetch).start(), room);
  assert.equal(calls[0].url, "https://api/v1/sessions/start");
  assert.equal(calls[0].headers.Authorization, "Bearer tok");
});

test("errors carry the service's words", async () => {
  const { fetch } = fakeFetch([[403, { code: 4003, data: null, message: "Not authenticated" }],
    [422, { detail: [{ msg: "Input should be a valid UUID" }] }]]);
  const api = new LiveAvatarApi("https://api", "tok", fetch);
  await assert.rejects(api.start(), (e) => e instanceof LiveAvatarError && /refused.*Not authenticated/.test(e.message));
  await assert.rejects(api.keepAlive(), /valid UUID/);
  const offline = new LiveAvatarApi("https://api", "tok", async () => { throw new TypeError("fetch failed"); });
  await assert.rejects(offline.start(), /could not be reached/);
});

test("stop is sent once, whoever asks, and a vanished session counts as stopped", async () => {
  const { fetch, calls } = fakeFetch([[404, { message: "Session not found" }]]);
  const api = new LiveAvatarApi("https://api", "tok", fetch);
  await Promise.all([api.stop("USER_CLOSED", { keepalive: true }), api.stop(), api.stop()]);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].keepalive, true);
  assert.deepEqual(calls[0].body, { reason: "USER_CLOSED" });
});
