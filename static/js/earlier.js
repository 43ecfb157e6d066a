// The transcript of this tab's previous conversation, kept in sessionStorage so that a reload
// (which ends the conversation) does not wipe what the visitor and the avatar said.

const KEY = "avatar-earlier-conversation";

/** Keep what was shown of a conversation that is going away; one with nothing said keeps the older one. */
export function keepEarlier(storage, entries, { wasLive }) {
  const lines = entries.filter((entry) => !entry.unshown && (entry.text || entry.interrupted))
    .map(({ speaker, text, typed = false, interrupted = false, speaking = false }) =>
      ({ speaker, text, typed, interrupted: interrupted || speaking })); // the reload cut it off
  if (!lines.length) return;
  try {
    storage.setItem(KEY, JSON.stringify({ wasLive, lines }));
  } catch {
    // Storage full or disabled: the earlier transcript is simply not shown after the reload.
  }
}

/** The kept conversation, or null. */
export function readEarlier(storage) {
  try {
    const kept = JSON.parse(storage.getItem(KEY) ?? "null");
    return Array.isArray(kept?.lines) ? kept : null;
  } catch {
    return null;
  }
}
