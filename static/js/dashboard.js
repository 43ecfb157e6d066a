// Staff dashboard: figures and recent sessions from the page's JSON (fetched again when a session
// starts or ends), live sessions from /ws/dashboard/.
// Every text from a session goes in through textContent: transcripts are visitor input.

import { watchAccount } from "./account.js";

const data = JSON.parse(document.getElementById("dashboard-data").textContent);
const SVG = "http://www.w3.org/2000/svg";
const LIVE = new Set(["started", "active"]);  // as the server's FEED_STATUSES
const SPEAKERS = { avatar: "Avatar", user: "Visitor" };
const ANY_SESSION = "00000000-0000-0000-0000-000000000000"; // as in data.commands_path

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

const ms = (value) => (value === null || value === undefined ? "–" : `${value} ms`);
const plural = (count, word) => `${count} ${word}${count === 1 ? "" : "s"}`;
// The admin's format and time zone (YYYY-MM-DD HH:MM:SS in the server's TIME_ZONE), so both read alike.
const dateFormat = new Intl.DateTimeFormat("sv-SE", {
  timeZone: data.time_zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
  second: "2-digit",
});
const when = (iso) => (iso ? dateFormat.format(new Date(iso)) : "–");

// Figures

function period(container, figures) {
  container.replaceChildren();
  const list = el("dl");
  const rows = [
    ["Sessions", figures.sessions], ["Minutes", figures.minutes],
    ["Median response latency", ms(figures.median_latency_ms)], ["95th percentile latency", ms(figures.p95_latency_ms)],
    ["Interruptions", figures.interruptions],
  ];
  for (const [label, value] of rows) list.append(el("dt", {}, label), el("dd", {}, String(value)));
  container.append(list);
  const failures = Object.entries(figures.failures);
  container.append(el("h4", {}, failures.length ? "Failures by reason" : "No failures"));
  const most = Math.max(1, ...failures.map(([, count]) => count));
  const bars = el("div", { class: "bars" });
  for (const [reason, count] of failures) {
    const bar = el("div", { class: "bar" });
    bar.style.width = `${(100 * count) / most}%`;
    const row = el("div", { class: "bar-row" });
    row.append(el("span", {}, reason), bar, el("span", {}, String(count)));
    bars.append(row);
  }
  container.append(bars);
}

function dayChart(container, days) {
  container.replaceChildren();
  const width = 840, height = 160, pad = 20, slot = (width - pad) / days.length;
  const most = Math.max(1, ...days.map((d) => d.sessions));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Sessions per day, last 7 days");
  days.forEach((day, i) => {
    const h = ((height - 2 * pad) * day.sessions) / most;
    const x = pad + i * slot;
    const rect = document.createElementNS(SVG, "rect");
    Object.entries({ x: x + 4, y: height - pad - h, width: slot - 8, height: h }).forEach(([k, v]) => rect.setAttribute(k, v));
    const count = document.createElementNS(SVG, "text");
    count.setAttribute("x", x + slot / 2);
    count.setAttribute("text-anchor", "middle");
    count.setAttribute("y", height - pad - h - 4);
    count.textContent = String(day.sessions);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", x + slot / 2);
    label.setAttribute("text-anchor", "middle");
    label.setAttribute("y", height - 6);
    label.textContent = day.day.slice(5);
    svg.append(rect, count, label);
  });
  container.append(svg);
}

function recent(body, sessions) {
  body.replaceChildren();
  for (const s of sessions) body.append(recentRow(el("tr", { "data-session": s.id }), s));
}

function recentRow(row, s) {
  const cell = el("td");
  cell.append(el("a", { href: s.admin_url }, s.id.slice(0, 8)));
  row.replaceChildren(cell, el("td", {}, s.status), el("td", {}, when(s.started_at)), el("td", {}, String(s.turn_count)),
    el("td", {}, ms(s.median_latency_ms)), el("td", {}, s.end_reason || "–"));
  return row;
}

// A recent session's row follows its frames between two fetches of the figures.
function updateRecent(session) {
  const row = document.querySelector(`#recent tr[data-session="${session.id}"]`);
  if (row) recentRow(row, session);
}

// Budgets, and the profile filter

const filter = document.getElementById("profile-filter");
const ofLimit = (value, limit) => (limit === null || limit === undefined ? `${value} (no limit)` : `${value} of ${limit}`);

function budgetTable(body, rows) {
  body.replaceChildren();
  for (const row of rows) {
    const tr = el("tr", { "data-profile": row.slug });
    tr.append(el("td", {}, row.active ? row.name : `${row.name} (inactive)`), el("td", {}, ofLimit(row.live, row.max_live_sessions)),
      el("td", {}, ofLimit(row.minutes_today, row.minutes_per_day)),
      el("td", {}, row.visitor_minutes_per_day ?? "no limit"));
    body.append(tr);
  }
  const site = document.getElementById("site-budget");
  const siteLive = rows.reduce((sum, row) => sum + row.live, 0);
  site.textContent = data.site_max_live_sessions
    ? `Whole site: ${siteLive} of ${data.site_max_live_sessions} live sessions.`
    : `Whole site: ${plural(siteLive, "live session")} (no site-wide limit).`;
  const chosen = filter.value || data.profile;
  filter.replaceChildren(new Option("All profiles", ""), ...rows.map((row) => new Option(row.name, row.slug)));
  filter.value = chosen;
}

const chosenProfileId = () => data.budgets.find((row) => row.slug === filter.value)?.id ?? null;

function showCardsOfProfile() {
  const id = chosenProfileId();
  for (const node of live.children) node.hidden = id !== null && Number(node.dataset.profile) !== id;
}

// Live sessions

const live = document.getElementById("live");

function card(session) {
  let node = document.getElementById(`session-${session.id}`);
  if (!node) {
    node = el("article", { class: "card", id: `session-${session.id}`, "data-session": session.id, "data-profile": session.profile_id ?? "" });
    const header = el("header");
    const link = el("a", { href: session.admin_url }, session.id.slice(0, 8));
    header.append(link, el("span", { class: "status" }));
    node.append(header, el("p", { class: "meta" }), el("ol", { class: "transcript" }));
    if (data.can_control) node.append(controlBox(session.id));
    live.prepend(node);
  }
  node.querySelector(".status").textContent = session.end_reason ? `${session.status} (${session.end_reason})` : session.status;
  meta(node, session);
  node.classList.toggle("over", !LIVE.has(session.status));
  for (const control of node.querySelectorAll(".control input, .control button")) control.disabled = !LIVE.has(session.status);
  node.dataset.status = session.status;
  document.getElementById("live-empty").hidden = live.children.length > 0;
  showCardsOfProfile();
  return node;
}

// Live control: what staff type here the avatar says (or answers) in the visitor's conversation.
const ACTIONS = [
  ["speak_text", "Say this", "primary"], ["speak_response", "Ask the avatar"], ["interrupt", "Interrupt"],
  ["start_listening", "Start listening"], ["stop_listening", "Stop listening"], ["end", "End conversation", "danger"],
];
const DONE = {
  speak_text: "Sent: the avatar is saying it.", speak_response: "Sent: the avatar is answering it.",
  interrupt: "Sent: the avatar was interrupted.", start_listening: "Sent: the avatar is listening.",
  stop_listening: "Sent: the avatar stopped listening.", end: "The conversation was ended.",
};

function controlBox(sessionId) {
  const form = el("form", { class: "control", "aria-label": "Control this conversation" });
  const id = `control-text-${sessionId}`;
  const input = el("input", { id, name: "text", type: "text", maxlength: String(data.max_text), autocomplete: "off",
    placeholder: "Type what the avatar should say" });
  const buttons = el("div", { class: "control-buttons" });
  for (const [command, label, style] of ACTIONS) {
    buttons.append(el("button", { type: "submit", value: command, class: style || "" }, label));
  }
  const result = el("p", { class: "control-result", role: "status" });
  form.append(el("label", { for: id }, "Step in"), input, buttons, result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const command = event.submitter?.value || "speak_text";
    const speaks = command === "speak_text" || command === "speak_response";
    const text = input.value.trim();
    if (speaks && !text) { say(result, "Type what the avatar should say first.", true); input.focus(); return; }
    if (command === "end" && !confirm("End this visitor's conversation?")) return;
    say(result, "Sending…");
    form.querySelectorAll("button").forEach((button) => { button.disabled = true; });
    try {
      const response = await fetch(data.commands_path.replace(ANY_SESSION, sessionId), {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": data.csrf_token },
        body: JSON.stringify(speaks ? { command, text } : { command }),
      });
      const answer = await response.json().catch(() => ({}));
      if (response.status === 202) {
        say(result, DONE[command]);
        if (speaks) input.value = "";
      } else {
        say(result, answer.message || `Not sent (HTTP ${response.status}).`, true);
      }
    } catch {
      say(result, "Not sent: the server could not be reached.", true);
    } finally {
      const live = LIVE.has(document.getElementById(`session-${sessionId}`)?.dataset.status);
      form.querySelectorAll("button").forEach((button) => { button.disabled = !live; });
    }
  });
  return form;
}

function say(node, text, failed = false) {
  node.textContent = text;
  node.classList.toggle("failed", failed);
}

function meta(node, metrics) {
  node.querySelector(".meta").textContent =
    `${plural(metrics.turn_count, "utterance")} · median response latency ${ms(metrics.median_latency_ms)} · ${plural(metrics.interruption_count, "interruption")}`;
}

function entry(sessionId, item) {
  const list = document.getElementById(`session-${sessionId}`)?.querySelector(".transcript");
  if (!list) return;
  let li = list.querySelector(`[data-position="${item.position}"]`);
  if (!li) {
    li = el("li", { "data-position": item.position });
    const after = [...list.children].find((other) => Number(other.dataset.position) > item.position);
    list.insertBefore(li, after || null);
  }
  li.className = [item.speaker, item.partial ? "partial" : "", item.interrupted ? "interrupted" : ""].join(" ").trim();
  li.replaceChildren(el("strong", {}, `${item.sender || SPEAKERS[item.speaker] || item.speaker}: `), item.text);
  li.classList.toggle("operator", Boolean(item.sender));
  list.scrollTop = list.scrollHeight;
}

function onMessage(message) {
  if (message.type === "snapshot") {
    live.replaceChildren();
    for (const session of message.sessions) {
      card(session);
      for (const item of session.transcript || []) entry(session.id, item);
    }
    document.getElementById("live-empty").hidden = live.children.length > 0;
  } else if (message.type === "session") {
    const node = document.getElementById(`session-${message.session.id}`);
    // A start or an end changes the counts at once; a live conversation's latencies and minutes, slowly.
    if (node?.dataset.status !== message.session.status) refreshFigures(2000);
    else if (LIVE.has(message.session.status)) refreshFigures(FIGURES_WHILE_LIVE_MS);
    if (LIVE.has(message.session.status) || node) card(message.session);
    updateRecent(message.session);
  } else if (message.type === "metrics") {
    // A transcript rebuilt after its session's last frame (under load, on the rebuilder).
    const node = document.getElementById(`session-${message.session_id}`);
    if (node) meta(node, message);
  } else if (message.type === "transcript") {
    entry(message.session_id, message.entry);
  }
}

function connect(delay = 1000) {
  const status = document.getElementById("feed-status");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}${data.feed_path}`);
  socket.addEventListener("open", () => { status.textContent = "live"; status.className = "feed-status live"; delay = 1000; });
  socket.addEventListener("message", (event) => onMessage(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    status.className = "feed-status down";
    if (event.code === 4403) { status.textContent = "not allowed: sign in as staff"; return; }
    status.textContent = "reconnecting…";
    setTimeout(() => connect(Math.min(delay * 2, 30000)), delay);
  });
}

function showFigures({ figures, recent: sessions, budgets }) {
  data.budgets = budgets;
  budgetTable(document.getElementById("budgets"), budgets);
  period(document.getElementById("period-today"), figures.today);
  period(document.getElementById("period-week"), figures.week);
  dayChart(document.getElementById("chart-days"), figures.per_day);
  recent(document.getElementById("recent"), sessions);
}

// Sessions start and end in bursts: fetch at most once every few seconds.
const FIGURES_WHILE_LIVE_MS = 10000;
let refreshTimer = null;
let refreshAt = 0;
function refreshFigures(delay) {
  if (refreshTimer && refreshAt <= Date.now() + delay) return; // one fetch is due sooner already
  clearTimeout(refreshTimer);
  refreshAt = Date.now() + delay;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    try {
      const url = new URL(data.figures_path, location.href);
      if (filter.value) url.searchParams.set("profile", filter.value);
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) showFigures(await response.json());
    } catch {
      // The next change tries again; the figures on screen stay as they were.
    }
  }, delay);
}

showFigures(data);
filter.addEventListener("change", () => {
  showCardsOfProfile();
  clearTimeout(refreshTimer);
  refreshTimer = null;
  refreshFigures(0);
});
connect();
watchAccount(document.getElementById("account"), when);
