// Tells the page that embeds this one how the conversation goes (postMessage), and takes its
// "end" request. Only the profile's allowed origins are told or listened to.

export class HostEvents {
  constructor(config, win = globalThis.window) {
    this.win = win;
    const allowed = config.allowed_origins ?? [];
    this.framed = Boolean(win && win.parent && win.parent !== win);
    // The embedding page's origin when the browser says it (a page that hides it is told on each allowed origin;
    // postMessage delivers only to the one it really is).
    const known = [win?.location?.ancestorOrigins?.[0], referrerOrigin(win?.document?.referrer)];
    const parent = known.find((origin) => origin && allowed.includes(origin));
    this.origins = this.framed ? (parent ? [parent] : allowed) : [];
    this.allowed = allowed;
  }

  /** type: avatar:ready | avatar:started | avatar:ended; detail: {session_id, end_reason}. */
  send(type, detail = {}) {
    for (const origin of this.origins) this.win.parent.postMessage({ type, ...detail }, origin);
  }

  /** Calls onEnd when the embedding page asks for the conversation to end ({type: "avatar:end"}). */
  listen(onEnd) {
    if (!this.framed) return;
    this.win.addEventListener("message", (event) => {
      if (event.source !== this.win.parent || !this.allowed.includes(event.origin)) return;
      if (event.data?.type === "avatar:end") onEnd();
    });
  }
}

function referrerOrigin(referrer) {
  try {
    return referrer ? new URL(referrer).origin : null;
  } catch {
    return null;
  }
}
