// The page's configuration, rendered by Django with json_script (ARCHITECTURE.md "Page context").

export function readConfig(doc = document) {
  const element = doc.getElementById("avatar-config");
  try {
    return JSON.parse(element?.textContent || "null") ?? { error: "The page is missing its configuration." };
  } catch {
    return { error: "The page configuration could not be read." };
  }
}

/** The events websocket URL (a path in the config) made absolute, ws: or wss: like the page. */
export function websocketUrl(path, location = globalThis.location) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/**
 * The tab's sessionStorage, or a stand-in kept in memory where the browser refuses it (a page framed
 * by another site, with third-party storage blocked): then a reload forgets, nothing else changes.
 */
export function tabStorage(win = globalThis) {
  try {
    const storage = win.sessionStorage;
    storage.length; // eslint-disable-line no-unused-expressions -- throws where access is denied
    return storage;
  } catch {
    const items = new Map();
    return {
      get length() { return items.size; },
      key: (i) => [...items.keys()][i] ?? null,
      getItem: (key) => (items.has(key) ? items.get(key) : null),
      setItem: (key, value) => items.set(key, String(value)),
      removeItem: (key) => items.delete(key),
    };
  }
}
