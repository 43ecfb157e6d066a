import assert from "node:assert/strict";
import { test } from "node:test";

import { HostEvents } from "../../static/js/host-events.js";

// A framed window: its parent records what it is sent, and the frame's message listeners can be fed.
function framedWindow({ ancestor = null, referrer = "" } = {}) {
  const parent = { sent: [], postMessage(message, origin) { this.sent.push([message, origin]); } };
  const listeners = [];
  return {
    parent,
    location: { ancestorOrigins: ancestor ? [ancestor] : [] },
    document: { referrer },
    addEventListener: (type, listener) => listeners.push(listener),
    deliver(event) { for (const listener of listeners) listener(event); },
  };
}

const config = { allowed_origins: ["https://shop.example", "https://other.example"] };

test("it tells only the embedding page's origin when the browser names it", () => {
  const win = framedWindow({ ancestor: "https://shop.example" });
  new HostEvents(config, win).send("avatar:started", { session_id: "s1" });
  assert.deepEqual(win.parent.sent, [[{ type: "avatar:started", session_id: "s1" }, "https://shop.example"]]);
});

test("it never names a parent origin that is not allowed", () => {
  const win = framedWindow({ referrer: "https://evil.example/page" });
  new HostEvents(config, win).send("avatar:ready");
  // Each allowed origin as the target: the browser delivers to none of them on evil.example.
  assert.deepEqual(win.parent.sent.map(([, origin]) => origin), config.allowed_origins);
});

test("a page that is not framed tells nobody", () => {
  const win = framedWindow();
  win.parent = win;
  new HostEvents(config, win).send("avatar:ready");
  assert.equal(win.sent, undefined);
});

test("it ends the conversation only when its parent asks from an allowed origin", () => {
  const win = framedWindow({ ancestor: "https://shop.example" });
  let ended = 0;
  new HostEvents(config, win).listen(() => ended++);
  win.deliver({ source: win.parent, origin: "https://evil.example", data: { type: "avatar:end" } });
  win.deliver({ source: {}, origin: "https://shop.example", data: { type: "avatar:end" } });
  win.deliver({ source: win.parent, origin: "https://shop.example", data: { type: "avatar:other" } });
  assert.equal(ended, 0);
  win.deliver({ source: win.parent, origin: "https://shop.example", data: { type: "avatar:end" } });
  assert.equal(ended, 1);
});
