// The three LiveAvatar REST calls the browser makes with the session token (API.md §2.2-2.4), or
// asks the server to make (ServerSessionApi).
// Stop is sent at most once, whatever ends the session, and can ride a keepalive fetch so that
// it still leaves when the page is closing.

export class LiveAvatarError extends Error {
  constructor(message, { status = 0, code = null } = {}) {
    super(message);
    this.name = "LiveAvatarError";
    this.status = status;
    this.code = code;
  }
}

// The SDK treats only 1000 as success; the OpenAPI examples show 100 (API.md §6 A).
const SUCCESS_CODES = new Set([1000, 100, undefined]);

export class LiveAvatarApi {
  constructor(baseUrl, sessionToken, fetchImpl = (...args) => globalThis.fetch(...args)) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.sessionToken = sessionToken;
    this.fetch = fetchImpl;
    this.stopping = null;
  }

  /** Start the session: resolves to `{livekit_url, livekit_client_token, max_session_duration, ...}`. */
  async start() {
    const data = await this.#post("/v1/sessions/start", {});
    if (!data?.livekit_url || !data?.livekit_client_token) {
      throw new LiveAvatarError("The avatar service started the session but sent no room to join.");
    }
    return data;
  }

  keepAlive() {
    return this.#post("/v1/sessions/keep-alive", {});
  }

  /** Stop the session once; later calls get the first call's promise. A 404 means already gone. */
  stop(reason = "USER_CLOSED", { keepalive = false } = {}) {
    this.stopping ??= this.#post("/v1/sessions/stop", { reason }, { keepalive }).catch((error) => {
      if (error.status !== 404) throw error;
    });
    return this.stopping;
  }

  async #post(path, body, { keepalive = false } = {}) {
    let response;
    try {
      response = await this.fetch(this.baseUrl + path, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.sessionToken}`, "Content-Type": "application/json" },
        body: JSON.stringify(body),
        keepalive,
      });
    } catch {
      throw new LiveAvatarError("The avatar service could not be reached. Check your connection and try again.");
    }
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      // An empty or non-JSON body: judged by the status alone.
    }
    if (response.ok && SUCCESS_CODES.has(payload?.code)) return payload?.data ?? null;
    throw new LiveAvatarError(errorMessage(payload, response.status), { status: response.status, code: payload?.code });
  }
}

function errorMessage(payload, status) {
  const detail = Array.isArray(payload?.detail) ? payload.detail.map((d) => d?.msg).filter(Boolean).join("; ") : "";
  const said = payload?.message || detail || payload?.error;
  if (status === 401 || status === 403) return `The avatar service refused this session${said ? `: ${said}` : ""}.`;
  return said ? `The avatar service said: ${said}` : `The avatar service answered with an error (HTTP ${status}).`;
}

/**
 * The same three calls when the server starts the session (LIVEAVATAR_SESSION_START = "server"):
 * the page asks this site, which calls LiveAvatar with the session token the page never sees.
 */
export class ServerSessionApi {
  constructor({ start_url: startUrl, keep_alive_url: keepAliveUrl, stop_url: stopUrl },
    fetchImpl = (...args) => globalThis.fetch(...args)) {
    Object.assign(this, { startUrl, keepAliveUrl, stopUrl, fetch: fetchImpl });
    this.stopping = null;
  }

  async start() {
    const data = await this.#post(this.startUrl, {});
    if (!data?.livekit_url || !data?.livekit_client_token) {
      throw new LiveAvatarError("The avatar service started the session but sent no room to join.");
    }
    return data;
  }

  keepAlive() {
    return this.#post(this.keepAliveUrl, {});
  }

  stop(reason = "USER_CLOSED", { keepalive = false } = {}) {
    this.stopping ??= this.#post(this.stopUrl, { reason }, { keepalive });
    return this.stopping;
  }

  async #post(url, body, { keepalive = false } = {}) {
    let response;
    try {
      response = await this.fetch(url, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), keepalive,
        credentials: "same-origin",
      });
    } catch {
      throw new LiveAvatarError("The server could not be reached. Check your connection and try again.");
    }
    const payload = await response.json().catch(() => null);
    if (response.ok) return payload;
    throw new LiveAvatarError(payload?.message || `The server answered with an error (HTTP ${response.status}).`,
      { status: response.status, code: payload?.error ?? null });
  }
}
