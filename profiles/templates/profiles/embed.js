// avatar_site embed: <script src="https://<site>/embed.js" data-profile="<slug>" async></script>
// adds a launcher button that opens the profile's conversation in an iframe: a panel, or a
// full-screen overlay on a phone. Closing it ends the conversation. On a site that is not one of the
// profile's allowed origins the site refuses the launcher's details, and nothing is shown.
(() => {
  const script = document.currentScript;
  const slug = script && script.dataset.profile;
  if (!slug) return;
  const site = new URL(script.src).origin;
  const PHONE = "(max-width: 640px)";
  const CLOSE_WAIT_MS = 3000;

  function element(tag, style, props = {}) {
    const node = Object.assign(document.createElement(tag), props);
    Object.assign(node.style, style);
    return node;
  }

  function mount(info) {
    const launcher = element("button", {
      position: "fixed", right: "20px", bottom: "20px", zIndex: 2147483000, padding: "12px 18px",
      border: "0", borderRadius: "24px", background: "#1d4ed8", color: "#fff", font: "600 15px system-ui, sans-serif",
      boxShadow: "0 4px 14px rgba(0,0,0,.25)", cursor: "pointer",
    }, { type: "button", textContent: `Talk to ${info.name}` });
    launcher.dataset.avatarEmbed = "launcher";
    let panel = null;
    let frame = null;

    function place() {
      if (!panel) return;
      const phone = window.matchMedia(PHONE).matches;
      panel.dataset.layout = phone ? "overlay" : "panel";
      Object.assign(panel.style, phone
        ? { inset: "0", width: "100%", height: "100%", borderRadius: "0" }
        : { inset: "auto 20px 20px auto", width: "420px", height: "min(720px, calc(100vh - 40px))", borderRadius: "12px" });
    }

    function open() {
      if (panel) return;
      panel = element("div", {
        position: "fixed", zIndex: 2147483001, background: "#fff", overflow: "hidden",
        boxShadow: "0 8px 30px rgba(0,0,0,.3)", display: "flex", flexDirection: "column",
      }, { role: "dialog", ariaLabel: info.name });
      panel.dataset.avatarEmbed = "panel";
      const bar = element("div", {
        display: "flex", alignItems: "center", justifyContent: "space-between", gap: "8px", padding: "6px 6px 6px 14px",
        borderBottom: "1px solid #e5e7eb", font: "600 15px system-ui, sans-serif", color: "#111827",
      });
      const close = element("button", {
        padding: "6px 12px", border: "1px solid #ccc", borderRadius: "6px",
        background: "#fff", font: "14px system-ui, sans-serif", cursor: "pointer",
      }, { type: "button", textContent: "Close" });
      bar.append(element("span", {}, { textContent: info.name }), close);
      close.addEventListener("click", shut);
      const url = new URL(info.url);
      url.searchParams.set("auto_start", "1");
      frame = element("iframe", { flex: "1", width: "100%", border: "0" }, { src: url.href, title: info.name });
      frame.allow = "microphone; autoplay";
      panel.append(bar, frame);
      document.body.append(panel);
      launcher.hidden = true;
      place();
    }

    // Closing ends the conversation first (the page stops it at LiveAvatar), then removes the frame;
    // a frame that does not answer is removed anyway, and its page stops the session as it unloads.
    let closing = null;
    function shut() {
      if (!panel || closing) return;
      frame.contentWindow.postMessage({ type: "avatar:end" }, site);
      closing = setTimeout(remove, CLOSE_WAIT_MS);
    }
    function remove() {
      clearTimeout(closing);
      closing = null;
      panel?.remove();
      panel = frame = null;
      launcher.hidden = false;
    }

    window.addEventListener("message", (event) => {
      if (event.origin !== site || !frame || event.source !== frame.contentWindow) return;
      if (event.data?.type === "avatar:ended" && closing) remove();
    });
    window.addEventListener("resize", place);
    launcher.addEventListener("click", open);
    document.body.append(launcher);
  }

  fetch(`${site}/p/${encodeURIComponent(slug)}/embed`, { mode: "cors", credentials: "omit" })
    .then((response) => (response.ok ? response.json() : null))
    .then((info) => {
      if (!info) return;
      if (document.body) mount(info);
      else document.addEventListener("DOMContentLoaded", () => mount(info));
    })
    .catch(() => {}); // not allowed here, or the site is down: show nothing
})();
