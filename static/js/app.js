// The visitor page: wires the markup (templates/sessions_app/index.html) to a Conversation and
// shows what it reports. The only module that touches the DOM besides the transcript view.

import { readConfig, tabStorage } from "./config.js";
import { Conversation } from "./conversation.js";
import { keepEarlier, readEarlier } from "./earlier.js";
import { resendLeftovers } from "./forwarder.js";
import { HostEvents } from "./host-events.js";
import { listMicrophones } from "./mic.js";
import { TranscriptView } from "./transcript-view.js";

const $ = (id) => document.getElementById(id);
const ui = {
  state: $("state"), quality: $("quality"), countdown: $("countdown"), error: $("error"), video: $("video"),
  avatarSpeaking: $("avatar-speaking"), userSpeaking: $("user-speaking"),
  indicators: [$("avatar-speaking"), $("user-speaking")], sound: $("enable-sound"),
  start: $("start"), end: $("end"), newSession: $("new-session"), form: $("message-form"), message: $("message"),
  send: $("send"), exactly: $("say-exactly"), interrupt: $("interrupt"), listening: $("listening"), mute: $("mute"),
  ptt: $("push-to-talk"), pttHelp: $("ptt-help"), device: $("mic-device"), micMessage: $("mic-message"),
  notice: $("notice"), talk: $("talk"), count: $("message-count"), earlier: $("earlier"),
};
const transcriptView = new TranscriptView($("transcript"), $("transcript-empty"));
const STATE_WORDS = { idle: "Ready to start", connecting: "Connecting…", live: "Live", ending: "Ending…", ended: "Ended" };
const WARN_SECONDS = 60;

let conversation = null;
let countdownTimer = null;
let pageConfig = readConfig();
const storage = tabStorage();
const host = new HostEvents(pageConfig);

const view = {
  state(state, words, failed) {
    ui.state.dataset.state = state;
    ui.state.textContent = state === "ended" && words ? `Ended. ${words}` : STATE_WORDS[state];
    const live = state === "live";
    ui.start.hidden = state !== "idle";
    ui.end.hidden = !(state === "connecting" || state === "live" || state === "ending");
    ui.end.disabled = state === "ending";
    ui.newSession.hidden = state !== "ended";
    ui.talk.hidden = state === "ended"; // nothing to do there any more: the next step is a new conversation
    for (const control of [ui.message, ui.send, ui.interrupt, ui.listening, ui.ptt]) control.disabled = !live;
    ui.mute.disabled = !(live && conversation.mic?.usable);
    ui.device.disabled = !(live && conversation.mic?.usable);
    if (failed) showMessage(ui.error, words);
    if (state === "live") host.send("avatar:started", { session_id: conversation.config.session_id });
    if (state === "ended") {
      host.send("avatar:ended", { session_id: conversation.config.session_id, end_reason: conversation.endReason ?? null });
    }
    if (state === "connecting") {
      showMessage(ui.error, "");
      showMessage(ui.notice, "");
    }
    if (state === "ended") {
      stopCountdown();
      ui.quality.hidden = true;
      ui.sound.hidden = true;
      ui.video.replaceChildren(placeholder(`The conversation has ended.${words ? ` ${words}` : ""}`));
      ui.indicators.forEach((indicator) => { indicator.hidden = true; });
      transcriptView.emptyNote.textContent = "Nothing was said in this conversation.";
    }
  },
  transcript: (entry) => transcriptView.show(entry),
  speaking(who, speaking) {
    (who === "avatar" ? ui.avatarSpeaking : ui.userSpeaking).hidden = !speaking;
    if (who === "avatar") ui.video.dataset.speaking = String(speaking);
  },
  quality(quality) {
    ui.quality.hidden = false;
    ui.quality.dataset.quality = quality;
    ui.quality.textContent = `Connection: ${quality}`;
  },
  media(element, kind) {
    if (kind === "video") {
      element.setAttribute?.("playsinline", "");
      ui.video.replaceChildren(element);
    } else {
      element.hidden = true;
      ui.video.after(element);
    }
  },
  detached(elements) {
    for (const element of elements) element.remove();
  },
  audioBlocked(blocked) {
    ui.sound.hidden = !blocked;
  },
  mic(state, message) {
    showMessage(ui.micMessage, message);
    const usable = state === "on" || state === "muted";
    ui.mute.disabled = !usable;
    ui.device.disabled = !usable;
    ui.mute.textContent = state === "muted" ? "Unmute" : "Mute";
    if (usable) fillDevices();
  },
  deadline(deadline) {
    stopCountdown();
    if (!deadline) return;
    let warned = false;
    const tick = () => {
      const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      ui.countdown.hidden = false;
      ui.countdown.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left`;
      ui.countdown.classList.toggle("warning", left <= WARN_SECONDS);
      if (left <= WARN_SECONDS && !warned) {
        warned = true;
        showMessage(ui.notice, left > 5 ? `The conversation ends in ${left} seconds.` : "The conversation is about to end.");
      }
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
  },
  listening(listening) {
    ui.listening.textContent = listening ? "Stop listening" : "Start listening";
  },
  pushToTalk(state, message = "") {
    ui.ptt.classList.toggle("active", state === "on");
    ui.ptt.textContent = state === "on" ? "Talking… release to send" : "Hold to talk";
    if (message) showMessage(ui.notice, message);
  },
};

function showMessage(element, text) {
  element.textContent = text ?? "";
  element.hidden = !text;
}

function placeholder(text) {
  const p = document.createElement("p");
  p.className = "video-placeholder";
  p.textContent = text;
  return p;
}

function stopCountdown() {
  clearInterval(countdownTimer);
  ui.countdown.hidden = true;
  ui.countdown.classList.remove("warning");
}

async function fillDevices() {
  const devices = await listMicrophones();
  const chosen = ui.device.value;
  ui.device.replaceChildren(...devices.map((device, i) => new Option(device.label || `Microphone ${i + 1}`, device.deviceId)));
  if (!devices.length) ui.device.append(new Option("Default microphone", ""));
  if (chosen) ui.device.value = chosen;
}

function begin(config) {
  conversation = new Conversation(config, view, { storage });
  transcriptView.clear();
  transcriptView.emptyNote.textContent = "What you and the avatar say appears here.";
  ui.ptt.hidden = !conversation.pushToTalkMode;
  ui.pttHelp.hidden = !conversation.pushToTalkMode;
  ui.mute.hidden = conversation.pushToTalkMode; // push-to-talk decides when the mic is open
  ui.listening.textContent = "Start listening";
  ui.mute.textContent = "Mute";
  showMessage(ui.notice, "");
  showMessage(ui.micMessage, "");
  view.state("idle");
}

// A fresh token from the server, without reloading the page. A profile's page sends its signed
// ticket (a framed page has no CSRF cookie); the plain form its CSRF token.
async function newSession(form = ui.newSession) {
  const csrf = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/)?.[1] ?? new FormData(form).get("csrfmiddlewaretoken");
  const headers = { "X-CSRFToken": csrf, Accept: "application/json" };
  if (pageConfig.mint_ticket) headers["X-Mint-Ticket"] = pageConfig.mint_ticket;
  ui.newSession.hidden = true;
  ui.start.disabled = true;
  try {
    const response = await fetch(pageConfig.new_session_url ?? form.action, { method: "POST", headers, credentials: "same-origin" });
    const config = await response.json().catch(() => ({ error: `The server answered with an error (HTTP ${response.status}).` }));
    if (!response.ok || config.error) throw new Error(config.error || config.message || `HTTP ${response.status}`);
    pageConfig = config;
    begin(config);
    await conversation.start();
  } catch (error) {
    showMessage(ui.error, `A new conversation could not be prepared: ${error.message}`);
    ui.newSession.hidden = false;
    ui.start.hidden = true;
  }
}

function bindControls() {
  // A framed page mints when the visitor starts (profiles/embedding.py).
  ui.start.addEventListener("click", () => (conversation ? conversation.start() : newSession()));
  ui.end.addEventListener("click", () => conversation?.end());
  ui.newSession.addEventListener("submit", (event) => {
    event.preventDefault();
    newSession(event.currentTarget);
  });
  ui.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = ui.message.value.trim();
    if (!text) return;
    if (await conversation.say(text, { exactly: ui.exactly.checked })) ui.message.value = "";
    countCharacters();
  });
  ui.message.addEventListener("input", countCharacters);
  ui.interrupt.addEventListener("click", () => conversation.interrupt());
  ui.listening.addEventListener("click", () => conversation.setListening(!conversation.listening));
  ui.mute.addEventListener("click", () => conversation.setMuted(conversation.mic?.state === "on"));
  ui.device.addEventListener("change", () => conversation.mic?.useDevice(ui.device.value));
  ui.sound.addEventListener("click", () => conversation.enableSound());
  // Push-to-talk: hold the button (mouse, touch, pen) or the space bar.
  ui.ptt.addEventListener("pointerdown", (event) => {
    ui.ptt.setPointerCapture?.(event.pointerId);
    conversation.pushToTalk(true);
  });
  for (const type of ["pointerup", "pointercancel"]) ui.ptt.addEventListener(type, () => conversation.pushToTalk(false));
  const spaceForTalk = (event) => event.code === "Space" && conversation?.pushToTalkMode && conversation.state === "live"
    && !event.target.closest?.("input, textarea, select, button:not(#push-to-talk)");
  document.addEventListener("keydown", (event) => {
    if (!spaceForTalk(event)) return;
    event.preventDefault();
    if (!event.repeat) conversation.pushToTalk(true);
  });
  document.addEventListener("keyup", (event) => {
    if (!spaceForTalk(event)) return;
    event.preventDefault();
    conversation.pushToTalk(false);
  });
  window.addEventListener("pagehide", () => {
    if (!conversation) return;
    keepEarlier(storage, conversation.transcript.entries, { wasLive: ["connecting", "live"].includes(conversation.state) });
    conversation.pageClosing();
  });
}

// A counter under the message box: the box stops at its limit, so say so before it does.
function countCharacters() {
  const limit = ui.message.maxLength;
  const used = ui.message.value.length;
  const number = (n) => n.toLocaleString("en");
  ui.count.textContent = used
    ? `${number(used)} of ${number(limit)} characters${used >= limit ? ": that is the limit." : ""}`
    : `Up to ${number(limit)} characters.`;
  ui.count.classList.toggle("full", used >= limit);
}

// The previous conversation of this tab, ended by a reload: say so and show what was said.
function showEarlier() {
  const earlier = readEarlier(storage);
  if (!earlier) return;
  const view = new TranscriptView($("earlier-transcript"));
  earlier.lines.forEach((line, i) => view.show({ id: i + 1, final: true, ...line }));
  ui.earlier.hidden = false;
  if (earlier.wasLive) {
    showMessage(ui.notice, "Your conversation ended when the page was reloaded. What was said is kept below; start a new conversation when you are ready.");
    ui.start.textContent = "Start a new conversation";
  }
}

function main() {
  const config = pageConfig;
  bindControls();
  host.listen(() => conversation?.end());
  resendLeftovers(storage, config.session_id);
  if (config.mint_later) {
    host.send("avatar:ready");
    if (config.auto_start) newSession();
    return;
  }
  if (config.error) {
    ui.newSession.hidden = false; // minting failed: let the visitor try again
    return;
  }
  begin(config);
  showEarlier();
  host.send("avatar:ready");
  if (config.emulator) {
    // Test hooks, on the emulator only: what a real visitor does with their voice or network.
    window.avatarApp = {
      get conversation() { return conversation; },
      simulateUserSays: (text) => conversation.simulateUserSays(text),
      dropForwarderSocket: () => conversation.forwarder.dropSocket(),
    };
  }
  if (config.auto_start) conversation.start();
}

main();
