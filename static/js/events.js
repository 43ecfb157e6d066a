// Server events from LiveAvatar (topic "agent-response"), read tolerantly: the docs, the SDK and
// the connector pages disagree on some names (API.md §6 B, C), so both spellings are accepted and
// events this code does not know are kept as they are, never dropped.

const ALIASES = {
  "user.transcription_chunk": "user.transcription.chunk",
  "avatar.transcription_chunk": "avatar.transcription.chunk",
  session_stopped: "session.stopped",
};

const END_REASONS = {
  UNKNOWN: "The conversation ended.",
  USER_DISCONNECTED: "The conversation ended because the connection was lost.",
  USER_CLOSED: "You ended the conversation.",
  // Ours (sessions_app.models.EndReason), told by the server.
  STAFF_ENDED: "A member of staff ended the conversation.",
  API_ENDED: "The site ended the conversation.",
  ORPHANED: "The conversation ended because this page stopped answering.",
  BUDGET_EXCEEDED: "The conversation ended: the time available for conversations is used up for now.",
  MAX_DURATION: "The conversation reached its time limit.",
  START_FAILED: "The conversation could not start.",
  SERVER_ERROR: "The conversation ended because of a problem on the avatar service.",
  IDLE_TIMEOUT: "The conversation ended after a long silence.",
  NO_CREDITS: "The conversation ended: the avatar service has no credits left.",
  AVATAR_DELETED: "The conversation ended: this avatar is no longer available.",
  MAX_DURATION_REACHED: "The conversation reached its time limit.",
  ZOMBIE_SESSION_REAP: "The conversation was closed by the avatar service.",
  AGENT_HANG_UP: "The avatar ended the conversation.",
};

/**
 * Parse one data-channel payload (bytes, string or object) into
 * `{type, raw, known, text?, endReason?}`. `type` is the canonical (dotted) name; `raw` is the
 * event exactly as received, for forwarding. Returns null for payloads that are not JSON objects.
 */
export function parseServerEvent(payload) {
  let raw = payload;
  if (payload instanceof Uint8Array) raw = new TextDecoder().decode(payload);
  if (typeof raw === "string") {
    try {
      raw = JSON.parse(raw);
    } catch {
      return null;
    }
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return null;
  const name = String(raw.event_type ?? "");
  const type = ALIASES[name] ?? name;
  const event = { type, raw, known: KNOWN.has(type) };
  if (typeof raw.text === "string") event.text = raw.text;
  if (type === "session.stopped") event.endReason = raw.end_reason || raw.stop_reason || "UNKNOWN";
  return event;
}

const KNOWN = new Set([
  "user.speak_started", "user.speak_ended", "user.transcription", "user.transcription.chunk",
  "avatar.speak_started", "avatar.speak_ended", "avatar.transcription", "avatar.transcription.chunk",
  "user.push_to_talk_started", "user.push_to_talk_stopped",
  "user.push_to_talk_start_failed", "user.push_to_talk_stop_failed", "session.stopped",
]);

/** Words for the visitor about why the session ended. */
export function describeEndReason(reason) {
  return END_REASONS[reason] ?? `The conversation ended (${reason || "no reason given"}).`;
}
