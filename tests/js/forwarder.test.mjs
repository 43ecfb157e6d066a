import assert from "node:assert/strict";
import { test } from "node:test";

import CLOSE_CODES from "../../static/js/close-codes.json" with { type: "json" };
import { EventQueue } from "../../static/js/event-queue.js";
import { Forwarder, resendLeftovers } from "../../static/js/forwarder.js";

class MemoryStorage {
  constructor() { this.map = new Map(); }
  get length() { return this.map.size; }
  key(i) { return [...this.map.keys()][i] ?? null; }
  getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  setItem(k, v) { this.map.set(k, String(v)); }
  removeItem(k) { this.map.delete(k); }
}

// A websocket the test drives by hand: open it, read what was sent, answer, cut it.
class FakeSocket {
  static all = [];
  constructor(url) { this.url = url; this.readyState = 0; this.sent = []; FakeSocket.all.push(this); }
  send(data) { this.sent.push(JSON.parse(data)); }
  open() { this.readyState = 1; this.onopen?.(); }
  answer(message) { this.onmessage?.({ data: JSON.stringify(message) }); }
  close(code = 1006) { this.readyState = 3; this.onclose?.({ code }); }
  get seqs() { return this.sent.flatMap((m) => m.events.map((e) => e.seq)); }
}

// Timers the test fires itself.
function manualTimers() {
  const pending = new Map();
  let id = 0;
  return {
    setTimeout(fn, ms) { pending.set(++id, { fn, ms }); return id; },
    clearTimeout(handle) { pending.delete(handle); },
    delays: () => [...pending.values()].map((t) => t.ms),
    runAll() { const due = [...pending.values()]; pending.clear(); for (const t of due) t.fn(); },
  };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

function setup({ storage = new MemoryStorage(), beacons = [] } = {}) {
  FakeSocket.all = [];
  const timers = manualTimers();
  let clock = 1000;
  const queue = new EventQueue({ sessionId: "s1", httpUrl: "/sessions/s1/events?credential=c", storage, now: () => clock++ });
  const forwarder = new Forwarder({
    queue, wsUrl: "ws://x/ws/sessions/s1/events/?credential=c", httpUrl: queue.httpUrl, WebSocketImpl: FakeSocket,
    timers, sendBeacon: (url, body) => { beacons.push({ url, body: JSON.parse(body) }); return true; },
  }).start();
  return { queue, forwarder, timers, storage, beacons, socket: () => FakeSocket.all.at(-1) };
}

test("events get increasing seqs from 1 and client timestamps", () => {
  const queue = new EventQueue({ sessionId: "a", storage: new MemoryStorage(), now: () => 42 });
  assert.deepEqual(queue.push("client", { event_type: "client.started" }),
    { seq: 1, ts: 42, source: "client", event: { event_type: "client.started" } });
  assert.equal(queue.push("server", { event_type: "x" }).seq, 2);
});

test("batches respect the event and byte limits", () => {
  const queue = new EventQueue({ sessionId: "a", storage: new MemoryStorage() });
  for (let i = 0; i < 5; i++) queue.push("client", { event_type: "client.keepalive", pad: "x".repeat(100) });
  assert.deepEqual(queue.batches({ maxEvents: 2 }).map((b) => b.length), [2, 2, 1]);
  assert.deepEqual(queue.batches({ maxBytes: 400 }).map((b) => b.length), [2, 2, 1]);
  assert.deepEqual(queue.batches({ afterSeq: 3 }).map((b) => b.map((r) => r.seq)), [[4, 5]]);
});

test("events of one task travel in one message and acks remove them", async () => {
  const { forwarder, queue, socket } = setup();
  socket().open();
  forwarder.record("client", { event_type: "client.started" });
  forwarder.record("command", { event_type: "avatar.speak_text", event_id: "c1", text: "Hi" });
  await tick();
  assert.equal(socket().sent.length, 1);
  assert.deepEqual(socket().seqs, [1, 2]);
  socket().answer({ type: "ack", seqs: [1, 2] });
  assert.equal(queue.size, 0);
});

test("events recorded before the socket opens are sent when it opens", async () => {
  const { forwarder, socket } = setup();
  forwarder.record("client", { event_type: "client.token_received" });
  await tick();
  assert.equal(socket().sent.length, 0);
  socket().open();
  assert.deepEqual(socket().seqs, [1]);
});

test("after a cut, unacked events are re-sent on the new socket with back-off", async () => {
  const { forwarder, timers, socket } = setup();
  const first = socket();
  first.open();
  for (let i = 0; i < 3; i++) forwarder.record("server", { event_type: "avatar.speak_started", event_id: `e${i}` });
  await tick();
  first.answer({ type: "ack", seqs: [1] });
  first.close(1006);
  forwarder.record("server", { event_type: "avatar.speak_ended", event_id: "e9" }); // while down
  await tick();
  assert.equal(timers.delays().length, 1);
  // 0.5 s, then 1 s, each ±25 % of jitter: the ranges do not overlap.
  const firstDelay = timers.delays()[0];
  assert.ok(firstDelay >= 375 && firstDelay <= 625, `first wait ${firstDelay} ms`);
  timers.runAll();
  const second = socket();
  assert.notEqual(second, first);
  second.close(1006); // fails again before opening: the next wait is longer
  const secondDelay = timers.delays()[0];
  assert.ok(secondDelay >= 750 && secondDelay <= 1250, `second wait ${secondDelay} ms`);
  timers.runAll();
  socket().open();
  assert.deepEqual(socket().seqs, [2, 3, 4]);
  socket().answer({ type: "ack", seqs: [2, 3, 4] });
  assert.equal(forwarder.queue.size, 0);
});

for (const [name, code] of Object.entries(CLOSE_CODES).filter(([, code]) => CLOSE_CODES.FINAL.includes(code))) {
  test(`closed with ${name} (${code}): no reconnecting, the events are dropped and close() resolves`, async () => {
    const { forwarder, timers, socket, queue, storage } = setup();
    socket().open();
    forwarder.record("client", { event_type: "client.started" });
    await tick();
    socket().close(code);
    assert.equal(timers.delays().length, 0);
    assert.equal(FakeSocket.all.length, 1);
    assert.equal(queue.size, 0);
    assert.equal(storage.length, 0);
    await forwarder.close();
  });
}

test("closed for flooding, it reconnects later and sends again", async () => {
  const { forwarder, timers, socket } = setup();
  socket().open();
  forwarder.record("client", { event_type: "client.started" });
  await tick();
  socket().close(CLOSE_CODES.FLOODING);
  assert.equal(timers.delays().length, 1);
  timers.runAll();
  socket().open();
  assert.deepEqual(socket().seqs, [1]);
});

test("server_busy re-sends later; refused events are dropped", async () => {
  const { forwarder, timers, socket, queue } = setup();
  socket().open();
  forwarder.record("client", { event_type: "client.started" });
  forwarder.record("client", { event_type: "client.connected" });
  await tick();
  socket().answer({ type: "error", code: "server_busy", message: "db down", seqs: [1, 2] });
  assert.equal(queue.size, 2);
  timers.runAll();
  assert.deepEqual(socket().seqs, [1, 2, 1, 2]);
  socket().answer({ type: "error", code: "bad_event", message: "nope", seqs: [2] });
  socket().answer({ type: "ack", seqs: [1] });
  assert.equal(queue.size, 0);
});

test("too_large halves the batch and re-sends", async () => {
  const { forwarder, socket } = setup();
  socket().open();
  for (let i = 0; i < 4; i++) forwarder.record("client", { event_type: "client.keepalive" });
  await tick();
  socket().answer({ type: "error", code: "too_large", message: "big", seqs: [1, 2, 3, 4] });
  assert.deepEqual(socket().sent.slice(1).map((m) => m.events.length), [2, 2]);
});

test("unacked events survive a reload in the same tab and are re-sent by the next page", async () => {
  const storage = new MemoryStorage();
  const beacons = [];
  const { forwarder } = setup({ storage, beacons });
  forwarder.record("client", { event_type: "client.started" });
  forwarder.record("client", { event_type: "client.unload" });
  forwarder.beacon(); // pagehide
  assert.deepEqual(beacons[0].body.events.map((e) => e.seq), [1, 2]);
  assert.equal(beacons[0].url, "/sessions/s1/events?credential=c");

  // The next page (new session s2) finds s1's events and posts them; the server acks both.
  const posted = [];
  const fetchImpl = async (url, init) => {
    posted.push({ url, events: JSON.parse(init.body).events });
    return { ok: true, status: 200, json: async () => ({ acked: [1, 2] }) };
  };
  await resendLeftovers(storage, "s2", fetchImpl);
  assert.deepEqual(posted.map((p) => [p.url, p.events.map((e) => e.seq)]), [["/sessions/s1/events?credential=c", [1, 2]]]);
  assert.equal(storage.length, 0);
});

test("a reloaded queue keeps counting where it stopped", () => {
  const storage = new MemoryStorage();
  new EventQueue({ sessionId: "s", storage }).push("client", {});
  assert.equal(new EventQueue({ sessionId: "s", storage }).push("client", {}).seq, 2);
});

test("leftovers stay when the server is busy", async () => {
  const storage = new MemoryStorage();
  new EventQueue({ sessionId: "old", httpUrl: "/h", storage }).push("client", { event_type: "client.unload" });
  await resendLeftovers(storage, "new", async () => ({ ok: false, status: 503 }));
  assert.equal(storage.length, 1);
  await resendLeftovers(storage, "new", async () => ({ ok: false, status: 404 }));
  assert.equal(storage.length, 0);
});

// A session's last event sent, acknowledged, and the forwarder closed after it.
async function drained() {
  const context = setup();
  context.socket().open();
  context.forwarder.record("client", { event_type: "client.stopped" });
  await tick();
  const closed = context.forwarder.close();
  context.socket().answer({ type: "ack", seqs: [1] });
  await closed;
  return context;
}

test("close waits for the acks, then closes the socket and forgets the queue", async () => {
  const { socket, storage } = await drained();
  assert.equal(socket().readyState, 3);
  assert.equal(storage.length, 0);
});

test("an event recorded after the drain is still sent and acknowledged", async () => {
  const { forwarder, socket, storage } = await drained();
  forwarder.record("client", { event_type: "client.error", stage: "join" });
  socket().open();
  assert.deepEqual(socket().seqs, [2]);
  assert.notEqual(storage.length, 0); // kept until acknowledged
  socket().answer({ type: "ack", seqs: [2] });
  await tick();
  assert.equal(socket().readyState, 3);
  assert.equal(storage.length, 0);
});

test("after close, a cut socket still reconnects until everything is acknowledged", async () => {
  const { forwarder, socket, timers, storage } = setup();
  socket().open();
  forwarder.record("client", { event_type: "client.stopped" });
  await tick();
  let closed = false;
  forwarder.close().then(() => (closed = true));
  socket().close(1006);
  timers.runAll();
  socket().open();
  assert.deepEqual(socket().seqs, [1]);
  socket().answer({ type: "ack", seqs: [1] });
  await tick();
  assert.equal(closed, true);
  assert.equal(socket().readyState, 3);
  assert.equal(timers.delays().length, 0);
  assert.equal(storage.length, 0);
});

test("a live-control command is carried out and answered on the socket it came on", async () => {
  FakeSocket.all = [];
  const queue = new EventQueue({ sessionId: "s1", httpUrl: "/e", storage: new MemoryStorage() });
  const seen = [];
  const forwarder = new Forwarder({
    queue, wsUrl: "ws://x", httpUrl: "/e", WebSocketImpl: FakeSocket, timers: manualTimers(),
    onControl: async (message) => { seen.push(message.command); return message.command === "interrupt" ? { ok: true, event_id: "e1" } : null; },
  }).start();
  const socket = FakeSocket.all.at(-1);
  socket.open();
  socket.answer({ type: "control", command_id: "c1", session_id: "s1", command: "interrupt", text: "" });
  socket.answer({ type: "control", command_id: "c1", session_id: "s1", command: "again", text: "" });
  await tick();
  assert.deepEqual(seen, ["interrupt", "again"]);
  // The second answered null (already handled elsewhere): nothing is sent for it.
  assert.deepEqual(socket.sent, [{ type: "control_result", command_id: "c1", ok: true, event_id: "e1" }]);
  forwarder.stopped = true;
});

test("the server's word on how the session ended is handed on", () => {
  const { forwarder, socket } = setup();
  const heard = [];
  forwarder.onEnded = (ended) => heard.push(ended);
  socket().open();
  socket().answer({ type: "session.ended", status: "ended", end_reason: "STAFF_ENDED" });
  assert.deepEqual(heard, [{ status: "ended", endReason: "STAFF_ENDED" }]);
});
