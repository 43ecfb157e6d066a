// The forwarding queue of one session: numbers events (seq per session, from 1) and keeps every
// event until the server acknowledges it. The queue lives in sessionStorage, so events not yet
// acknowledged survive a reload of the page in the same tab and are sent again from there.

const PREFIX = "avatar-forwarder:";

export class EventQueue {
  constructor({ sessionId, httpUrl, storage, now = Date.now }) {
    this.key = PREFIX + sessionId;
    this.storage = storage;
    this.now = now;
    const saved = readJson(storage, this.key);
    this.httpUrl = httpUrl ?? saved?.httpUrl;
    this.next = saved?.next ?? 1;
    this.pending = saved?.pending ?? [];
  }

  get size() {
    return this.pending.length;
  }

  /** Number a new event and keep it until acknowledged. */
  push(source, event) {
    const record = { seq: this.next++, ts: this.now(), source, event };
    this.pending.push(record);
    this.#save();
    return record;
  }

  /** Forget events the server has stored (or refused for good). */
  remove(seqs) {
    const gone = new Set(seqs);
    const before = this.pending.length;
    this.pending = this.pending.filter((record) => !gone.has(record.seq));
    if (this.pending.length !== before) this.#save();
  }

  /** Pending events after `afterSeq`, cut into batches that fit the server's limits. */
  batches({ afterSeq = 0, maxEvents = 200, maxBytes = 60000 } = {}) {
    const out = [];
    let batch = [];
    let bytes = 0;
    for (const record of this.pending) {
      if (record.seq <= afterSeq) continue;
      const size = JSON.stringify(record).length + 1;
      if (batch.length && (batch.length >= maxEvents || bytes + size > maxBytes)) {
        out.push(batch);
        batch = [];
        bytes = 0;
      }
      batch.push(record);
      bytes += size;
    }
    if (batch.length) out.push(batch);
    return out;
  }

  #save() {
    try {
      this.storage.setItem(this.key, JSON.stringify({ httpUrl: this.httpUrl, next: this.next, pending: this.pending }));
    } catch {
      // Storage full or disabled: the events still go out from memory, only reload safety is lost.
    }
  }
}

/** Queues of other sessions left in this tab's storage (a reload during a conversation). */
export function leftoverQueues(storage, currentSessionId) {
  const queues = [];
  for (let i = 0; i < storage.length; i++) {
    const key = storage.key(i);
    if (!key?.startsWith(PREFIX) || key === PREFIX + currentSessionId) continue;
    queues.push(new EventQueue({ sessionId: key.slice(PREFIX.length), storage }));
  }
  return queues;
}

/** Drop the stored queue once nothing is left to send. */
export function forgetIfEmpty(queue) {
  if (queue.size === 0) queue.storage.removeItem(queue.key);
}

function readJson(storage, key) {
  try {
    return JSON.parse(storage.getItem(key) ?? "null");
  } catch {
    return null;
  }
}
