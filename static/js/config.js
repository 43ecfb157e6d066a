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
