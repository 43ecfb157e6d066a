// Forwards every event of a session to Django (ARCHITECTURE.md "Forwarding protocol"): a
// websocket while the page is open, re-sending whatever is not acknowledged after each reconnect
// (with back-off), and navigator.sendBeacon for what is left when the page goes away. The same
// socket brings live-control commands from staff or other systems: `onControl` carries each out
// and its answer goes back on the socket the command came on.

import CLOSE_CODES from "./close-codes.json" with { type: "json" };
import { forgetIfEmpty, leftoverQueues } from "./event-queue.js";

// The server closes with these when retrying cannot help (bad credential, foreign origin, a
// session that no longer exists).
const FINAL_CLOSE_CODES = new Set(CLOSE_CODES.FINAL);
// Error codes after which the same events may be accepted later.
const RETRY_ERRORS = new Set(["server_busy", "rate_limited", "malformed_json"]);
const BEACON_MAX_BYTES = 60000;

export class Forwarder {
  constructor({ queue, wsUrl, httpUrl, WebSocketImpl = globalThis.WebSocket, sendBeacon, timers = globalThis,
    maxEvents = 200, maxBytes = 60000, onStatus = () => {}, onEnded = () => {}, onControl = null }) {
    Object.assign(this, {
      queue, wsUrl, httpUrl, WebSocketImpl, timers, maxEvents, maxBytes, onStatus, onEnded, onControl,
    });
    this.sendBeacon = sendBeacon ?? ((url, body) => globalThis.navigator.sendBeacon(url, body));
    this.socket = null;
    this.sentUpTo = 0; // highest seq already sent on the current socket
    this.attempts = 0;
    this.stopped = false;
    this.retryTimer = null;
    this.flushQueued = false;
    this.closing = false;
    this.drainWaiters = [];
  }

  start() {
    this.#connect();
    return this;
  }

  /** Record one event (source: server | command | client) and send it soon. */
  record(source, event) {
    const record = this.queue.push(source, event);
    if (this.stopped) {
      // An event after the drain (a late one from the session's teardown): connect again, and stop
      // once it is acknowledged too.
      this.stopped = false;
      this.#connect();
      return record;
    }
    if (!this.flushQueued) {
      // Events born in the same task travel in one message.
      this.flushQueued = true;
      queueMicrotask(() => {
        this.flushQueued = false;
        this.#flush();
      });
    }
    return record;
  }

  /** Cut the websocket as a network failure would (tests, and the page's debug hook). */
  dropSocket() {
    this.socket?.close(4000, "dropped");
  }

  /**
   * The session is over: stop once every event is acknowledged. Until then the socket keeps
   * reconnecting (a slow or restarting server loses nothing); page close still beacons the rest.
   */
  close() {
    this.closing = true;
    const closed = new Promise((resolve) => this.drainWaiters.push(resolve));
    this.#maybeDrained();
    return closed;
  }

  /** Page is going away: hand what is left to the browser to POST. Kept in storage as well. */
  beacon() {
    const body = (batch) => JSON.stringify({ events: batch });
    for (const batch of this.queue.batches({ maxEvents: this.maxEvents, maxBytes: BEACON_MAX_BYTES })) {
      this.sendBeacon(this.httpUrl, body(batch));
    }
  }

  #connect() {
    if (this.stopped) return;
    const socket = new this.WebSocketImpl(this.wsUrl);
    this.socket = socket;
    this.sentUpTo = 0;
    socket.onopen = () => {
      this.attempts = 0;
      this.onStatus("open");
      this.#flush();
    };
    socket.onmessage = (message) => this.#receive(message.data, socket);
    socket.onclose = (close) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.onStatus("closed", close.code);
      if (this.stopped) return;
      if (FINAL_CLOSE_CODES.has(close.code)) this.#giveUp(close.code);
      else this.#retryLater(() => this.#connect());
    };
  }

  #flush() {
    const socket = this.socket;
    if (!socket || socket.readyState !== 1) return;
    for (const batch of this.queue.batches({ afterSeq: this.sentUpTo, maxEvents: this.maxEvents, maxBytes: this.maxBytes })) {
      socket.send(JSON.stringify({ type: "events", events: batch }));
      this.sentUpTo = batch.at(-1).seq;
    }
  }

  #receive(data, socket) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message.type === "session.ended") {
      // How the server recorded the end (a staff member, the site, the time limit...), sent once.
      this.onEnded({ status: message.status, endReason: message.end_reason });
    } else if (message.type === "control") {
      this.#control(message, socket);
    } else if (message.type === "ack") {
      this.queue.remove(message.seqs ?? []);
      this.#maybeDrained();
    } else if (message.type === "error") {
      if (RETRY_ERRORS.has(message.code)) {
        this.#retryLater(() => {
          this.sentUpTo = 0;
          this.#flush();
        });
      } else if (message.code === "too_large" && (message.seqs?.length ?? 0) > 1) {
        this.maxEvents = Math.max(1, Math.floor(message.seqs.length / 2));
        this.sentUpTo = 0;
        this.#flush();
      } else {
        // The server will never take these as they are (bad_event, bad_envelope): keeping them
        // would block nothing but would be re-sent forever.
        console.warn("Events refused by the server:", message.code, message.message, message.seqs);
        this.queue.remove(message.seqs ?? []);
        this.#maybeDrained();
      }
    }
  }

  async #control(message, socket) {
    let result;
    try {
      result = this.onControl ? await this.onControl(message) : { ok: false, message: "This page takes no commands." };
    } catch (error) {
      result = { ok: false, message: error.message };
    }
    // null: already answered (the command came on an earlier socket too).
    if (!result || socket.readyState !== 1) return;
    socket.send(JSON.stringify({ type: "control_result", command_id: message.command_id, ...result }));
  }

  #retryLater(action) {
    this.timers.clearTimeout(this.retryTimer);
    // 0.5 s, 1 s, 2 s ... capped at 15 s, with jitter so that many pages do not retry in step.
    const delay = Math.min(15000, 500 * 2 ** this.attempts) * (0.75 + Math.random() / 2);
    this.attempts += 1;
    this.retryTimer = this.timers.setTimeout(action, delay);
  }

  // The server will never take this session's events: drop them (re-sending them on every later
  // page would change nothing) and release whoever waits for the drain.
  #giveUp(code) {
    if (this.queue.size) console.warn(`Events not recorded: the server closed with ${code}.`, this.queue.size);
    this.queue.remove(this.queue.pending.map((record) => record.seq));
    this.closing = true;
    this.#maybeDrained();
  }

  #maybeDrained() {
    if (this.queue.size || !this.closing) return;
    this.stopped = true;
    this.timers.clearTimeout(this.retryTimer);
    this.socket?.close(1000, "done");
    forgetIfEmpty(this.queue);
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }
}

/**
 * Send what earlier pages of this tab left unacknowledged (the page was reloaded or replaced
 * before their events were stored). Duplicates are harmless: the server acks them without
 * storing them twice.
 */
export async function resendLeftovers(storage, currentSessionId, fetchImpl = globalThis.fetch) {
  for (const queue of leftoverQueues(storage, currentSessionId)) {
    if (!queue.httpUrl || queue.size === 0) {
      storage.removeItem(queue.key);
      continue;
    }
    for (const batch of queue.batches({ maxBytes: BEACON_MAX_BYTES })) {
      try {
        const response = await fetchImpl(queue.httpUrl, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ events: batch }),
        });
        if (response.ok) {
          const { acked = [], errors = [] } = await response.json();
          queue.remove([...acked, ...errors.flatMap((error) => error.seqs ?? [])]);
        }
        // Refused for good (bad credential, unknown session, bad body): retrying cannot help.
        else if ([400, 401, 404, 413].includes(response.status)) queue.remove(batch.map((r) => r.seq));
        else break; // busy or throttled: try again on a later page load
      } catch {
        break;
      }
    }
    forgetIfEmpty(queue);
  }
}
