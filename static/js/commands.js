// Commands for the LiveAvatar agent (topic "agent-control"). Each one carries a fresh event_id so
// the server's replies (source_event_id) and our stored copy can be matched to it; the official
// SDK leaves it out of interrupt and push-to-talk.

export const COMMAND_TOPIC = "agent-control";
export const RESPONSE_TOPIC = "agent-response";

export function makeCommand(eventType, fields = {}) {
  return { event_id: crypto.randomUUID(), event_type: eventType, ...fields };
}

export function encodeCommand(command) {
  return new TextEncoder().encode(JSON.stringify(command));
}
