// One LiveAvatar conversation, from the token in the page to its end: starts the session, joins
// the room, waits for the avatar and the agent, sends commands, follows the server events, keeps
// the session alive, and ends it the same way whoever ends it (the visitor, the server, the page
// closing, a lost room). Every event goes to Django through the forwarder. No DOM here: the view
// object (app.js) is told what to show.

import { COMMAND_TOPIC, RESPONSE_TOPIC, encodeCommand, makeCommand } from "./commands.js";
import { websocketUrl } from "./config.js";
import { EventQueue } from "./event-queue.js";
import { describeEndReason, parseServerEvent } from "./events.js";
import { Forwarder } from "./forwarder.js";
import { LiveAvatarApi, ServerSessionApi } from "./liveavatar-api.js";
import { Microphone } from "./mic.js";
import { AVATAR_IDENTITY, DisconnectReason, RoomEvent, agentIdentity, createRoom } from "./room.js";
import { Transcript } from "./transcript.js";

const JOIN_TIMEOUT_MS = 30000;
const KEEPALIVE_MS = 60000;
const ACK_TIMEOUT_MS = 5000;
const STOP_TIMEOUT_MS = 5000;
const SERVER_END_WAIT_MS = 2000;
// Ends someone chose (the visitor, staff, the site), as LiveAvatar is told: USER_CLOSED.
const DELIBERATE_ENDS = new Set(["USER_CLOSED", "STAFF_ENDED", "API_ENDED"]);

export class Conversation {
  // makeRoom is an option so that tests can hold a conversation without a browser.
  constructor(config, view, { storage = globalThis.sessionStorage, makeRoom = createRoom } = {}) {
    this.config = config;
    this.view = view;
    this.makeRoom = makeRoom;
    this.state = "idle"; // idle → connecting → live → ending → ended
    this.stage = "";
    // Who starts the session: the page with its session token, or the server (the page never has it).
    this.api = config.session_start === "server"
      ? new ServerSessionApi(config)
      : new LiveAvatarApi(config.liveavatar_api_url, config.session_token);
    const queue = new EventQueue({ sessionId: config.session_id, httpUrl: config.events_http_url, storage });
    this.forwarder = new Forwarder({
      queue, wsUrl: websocketUrl(config.events_ws_url), httpUrl: config.events_http_url,
      onEnded: (ended) => this.#serverEnded(ended),
      onControl: (message) => this.control(message),
    });
    this.serverEnd = null; // how the server recorded the end, once it says
    this.serverEndHeard = new Promise((resolve) => (this.heardServerEnd = resolve));
    this.controlsSeen = new Set();
    this.transcript = new Transcript();
    this.pushToTalkMode = config.interactivity === "PUSH_TO_TALK";
    this.room = null;
    this.mic = null;
    this.starting = null;
    this.speaking = { user: false, avatar: false };
    this.listening = false;
    this.pttDown = false;
    this.waiters = [];
    // Server events already handled: a room that rejoins may deliver one again.
    this.seenEventIds = new Set();
    this.mediaKinds = new Set();
    this.audioBlocked = false;
    this.client("client.token_received", { liveavatar_session_id: config.liveavatar_session_id });
  }

  /** Forward one of the page's own lifecycle events. */
  client(eventType, fields = {}) {
    this.forwarder.record("client", { event_type: eventType, ...fields });
  }

  async start() {
    if (this.state !== "idle") return;
    this.#setState("connecting");
    this.forwarder.start();
    this.client("client.start_requested");
    try {
      this.stage = "start";
      this.starting = this.api.start();
      // The room code (livekit-client in production) downloads while the session starts.
      const [room, started] = await Promise.all([this.makeRoom(this.config), this.starting]);
      this.room = room;
      const maxSeconds = started.max_session_duration ?? this.config.max_session_duration ?? null;
      const deadline = maxSeconds ? Date.now() + maxSeconds * 1000 : null;
      this.client("client.started", { max_session_duration: maxSeconds });
      if (this.state !== "connecting") return;
      this.stage = "connect";
      this.#wireRoom(room);
      await room.connect(started.livekit_url, started.livekit_client_token);
      this.client("client.connected", { identity: room.localParticipant.identity });
      if (this.state !== "connecting") return;
      this.stage = "join";
      await this.#waitForParticipants();
      if (this.state !== "connecting") return;
      this.client("client.participants_ready");
      await this.#goLive(deadline);
    } catch (error) {
      if (this.state !== "connecting") return; // ended meanwhile: the error is only its echo
      this.client("client.error", { message: error.message, stage: this.stage });
      await this.#finish({ reason: `${this.stage.toUpperCase()}_FAILED`, words: error.message, failed: true });
    }
  }

  /** The visitor ends the conversation (also while it is still connecting). */
  end() {
    if (this.state !== "connecting" && this.state !== "live") return this.finishing;
    return this.#finish({ reason: "USER_CLOSED", words: describeEndReason("USER_CLOSED") });
  }

  /** The page is closing: everything must leave now, with fetch keepalive and sendBeacon. */
  pageClosing() {
    if (this.state === "connecting" || this.state === "live") {
      this.client("client.stop_requested", { reason: "USER_CLOSED", page_closed: true });
      if (this.starting) this.api.stop("USER_CLOSED", { keepalive: true }).catch(() => {});
      this.room?.disconnect();
      this.state = "ended";
      this.client("client.stopped", { reason: "USER_CLOSED", page_closed: true });
    }
    this.client("client.unload");
    this.forwarder.beacon();
  }

  // Commands (agent-control)

  // `control_id`: the live-control command this one carries out; it goes in the forwarded copy
  // only, so that the stored record and the line it causes point back to who sent it.
  async command(eventType, fields = {}, { controlId = null } = {}) {
    if (this.state !== "live") return null;
    const command = makeCommand(eventType, fields);
    this.forwarder.record("command", controlId ? { ...command, control_id: controlId } : command);
    await this.room.localParticipant.publishData(encodeCommand(command), { reliable: true, topic: COMMAND_TOPIC });
    return command;
  }

  /**
   * A live-control command from staff or another system, relayed by the server on the forwarding
   * socket. Resolves to the answer for the server ({ok, event_id} or {ok: false, message}), or
   * null for a command already answered.
   */
  async control({ command_id: controlId, session_id: sessionId, command, text, sender }) {
    if (this.controlsSeen.has(controlId)) return null;
    this.controlsSeen.add(controlId);
    if (sessionId !== this.config.session_id) return { ok: false, message: "This page runs another session." };
    if (this.state !== "live") return { ok: false, message: `The conversation is not live (it is ${this.state}).` };
    const by = { controlId };
    const mark = this.config.mark_operator_lines ? sender : null;
    let sent;
    if (command === "speak_text") {
      this.transcript.expectOperatorLine(mark);
      sent = await this.command("avatar.speak_text", { text }, by);
    } else if (command === "speak_response") {
      sent = await this.command("avatar.speak_response", { text }, by);
      // Asked by staff or a system, not by the visitor: shown only where operator lines are marked.
      if (sent && mark) this.view.transcript(this.transcript.addTyped(text, mark));
    } else if (command === "interrupt") {
      sent = await this.interrupt(by);
    } else if (command === "start_listening" || command === "stop_listening") {
      sent = await this.setListening(command === "start_listening", by);
    } else if (command === "end") {
      sent = makeCommand("client.ended_by_control", { control_id: controlId, sender });
      this.forwarder.record("client", sent);
      const reason = sender === "staff" ? "STAFF_ENDED" : "API_ENDED";
      // The server stops the session once this answer reaches it, with this reason; the room is
      // left here at once (synchronously), so no stop event of the service's can overtake it.
      this.#finish({ reason, words: describeEndReason(reason), stopAtService: false });
    } else {
      return { ok: false, message: `Unknown command ${command}.` };
    }
    return sent ? { ok: true, event_id: sent.event_id } : { ok: false, message: "The page could not send it." };
  }

  /** Ask the avatar (its LLM answers), or with `exactly` make it say the text word for word. */
  async say(text, { exactly = false } = {}) {
    const command = await this.command(exactly ? "avatar.speak_text" : "avatar.speak_response", { text });
    // A question typed for the avatar's LLM has no transcription event of its own.
    if (command && !exactly) this.view.transcript(this.transcript.addTyped(text));
    return command;
  }

  interrupt(by = {}) {
    if (this.speaking.avatar) {
      const entry = this.transcript.markInterrupted();
      if (entry) this.view.transcript(entry);
    }
    return this.command("avatar.interrupt", {}, by);
  }

  async setListening(listening, by = {}) {
    const command = await this.command(listening ? "avatar.start_listening" : "avatar.stop_listening", {}, by);
    if (!command) return null;
    this.listening = listening;
    this.view.listening(listening);
    return command;
  }

  /** Push-to-talk: the mic is open only between the server's "started" and the release. */
  async pushToTalk(down) {
    if (!this.pushToTalkMode || this.state !== "live" || down === this.pttDown) return;
    this.pttDown = down;
    if (down) {
      this.view.pushToTalk("starting");
      const acked = this.#waitFor(["user.push_to_talk_started", "user.push_to_talk_start_failed"]);
      await this.command("user.start_push_to_talk");
      const answer = await acked;
      if (answer === "user.push_to_talk_started") {
        if (this.pttDown) {
          await this.mic?.setMuted(false);
          this.view.pushToTalk("on");
        }
      } else {
        this.pttDown = false;
        this.view.pushToTalk("off", answer ? "Push-to-talk could not start. Try again." : "The avatar did not answer push-to-talk. Try again.");
      }
    } else {
      await this.mic?.setMuted(true);
      await this.command("user.stop_push_to_talk");
      this.view.pushToTalk("off");
    }
  }

  async enableSound() {
    await this.room?.startAudio();
    this.#checkAudio();
  }

  async setMuted(muted) {
    await this.mic?.setMuted(muted);
  }

  /** Test hook on the emulator only: the visitor "says" a sentence. */
  simulateUserSays(text) {
    return this.command("emulator.user_says", { text });
  }

  // Room

  #wireRoom(room) {
    room.on(RoomEvent.DataReceived, (payload, participant, kind, topic) => {
      if (topic === RESPONSE_TOPIC) this.#serverEvent(payload);
    });
    room.on(RoomEvent.TrackSubscribed, (track, publication, participant) => {
      if (participant?.identity === AVATAR_IDENTITY) this.#attach(track);
    });
    room.on(RoomEvent.TrackUnsubscribed, (track) => this.view.detached(track.detach()));
    room.on(RoomEvent.ConnectionQualityChanged, (quality, participant) => {
      if (participant?.identity !== room.localParticipant.identity) return;
      this.view.quality(quality);
      this.client("client.quality", { quality });
    });
    room.on(RoomEvent.Reconnecting, () => this.view.quality("reconnecting"));
    room.on(RoomEvent.Reconnected, () => this.view.quality(room.localParticipant.connectionQuality));
    room.on(RoomEvent.AudioPlaybackStatusChanged, () => this.#checkAudio());
    room.on(RoomEvent.Disconnected, (reason) => {
      // The room went away without session.stopped: network loss or the service closed it.
      // (While connect() runs, its own rejection reports the failure.)
      if (this.state === "live" || (this.state === "connecting" && this.stage === "join")) {
        this.#finish({ reason: "USER_DISCONNECTED", words: describeDisconnect(reason), failed: true });
      }
    });
  }

  #waitForParticipants() {
    const needed = [AVATAR_IDENTITY, agentIdentity(this.config.liveavatar_session_id)];
    const missing = () => needed.filter((identity) => !this.room.remoteParticipants.has(identity));
    if (!missing().length) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => missing().length || done(resolve);
      const timer = setTimeout(() => done(() => reject(new Error(
        `The avatar did not join within ${JOIN_TIMEOUT_MS / 1000} seconds. Please try again in a moment.`))), JOIN_TIMEOUT_MS);
      const done = (settle) => {
        clearTimeout(timer);
        this.room.off(RoomEvent.ParticipantConnected, check);
        this.abortJoin = null;
        settle();
      };
      this.room.on(RoomEvent.ParticipantConnected, check);
      this.abortJoin = () => done(resolve);
    });
  }

  async #goLive(deadline) {
    this.#setState("live");
    this.view.deadline(deadline);
    this.keepAliveTimer = setInterval(() => this.#keepAlive(), KEEPALIVE_MS);
    this.mic = new Microphone(this.room, (state, message) => {
      // A capture still starting when the page closed answers after the end: nothing to tell then.
      if (this.state === "ended") return;
      this.client("client.mic", message ? { state, message } : { state });
      this.view.mic(state, message);
    });
    await this.mic.enable({ muted: this.pushToTalkMode });
  }

  #attach(track) {
    this.view.media(track.attach(), track.kind);
    this.mediaKinds.add(track.kind);
    if (track.kind === "audio") this.#checkAudio();
    if (!this.mediaReady && this.mediaKinds.has("video") && this.mediaKinds.has("audio")) {
      this.mediaReady = true;
      this.client("client.media_ready");
    }
  }

  // Autoplay: browsers may refuse sound until the visitor taps; room.startAudio() unlocks it.
  #checkAudio() {
    if (!this.room || this.state === "ending" || this.state === "ended") return;
    const blocked = !this.room.canPlaybackAudio;
    if (blocked === this.audioBlocked) return;
    this.audioBlocked = blocked;
    this.client(blocked ? "client.audio_blocked" : "client.audio_unblocked");
    this.view.audioBlocked(blocked);
  }

  async #keepAlive() {
    this.client("client.keepalive");
    try {
      await this.api.keepAlive();
    } catch (error) {
      this.client("client.error", { message: error.message, stage: "keepalive" });
    }
  }

  // Server events (agent-response)

  #serverEvent(payload) {
    const event = parseServerEvent(payload);
    if (!event) {
      // Not JSON: still evidence of what the service sent.
      this.forwarder.record("server", { event_type: "unparsed", payload: new TextDecoder().decode(payload) });
      return;
    }
    const eventId = event.raw.event_id;
    if (typeof eventId === "string" && eventId) {
      if (this.seenEventIds.has(eventId)) return;
      this.seenEventIds.add(eventId);
    }
    this.forwarder.record("server", event.raw);
    const entry = this.transcript.apply(event);
    if (entry) this.view.transcript(entry);
    for (const waiter of this.waiters.filter((w) => w.types.includes(event.type))) waiter.resolve(event.type);
    const [who, what] = event.type.split(".");
    if (what === "speak_started" || what === "speak_ended") {
      this.speaking[who] = what === "speak_started";
      this.view.speaking(who, this.speaking[who]);
    }
    if (event.type === "session.stopped") {
      this.#finish({ reason: event.endReason, fromServer: true, words: describeEndReason(event.endReason) });
    }
  }

  // The server recorded the end (forwarder's session.ended): its reason is the one to show, since
  // LiveAvatar's session.stopped says only what LiveAvatar was told (USER_CLOSED for a staff stop).
  #serverEnded({ status, endReason }) {
    if (status === "failed") return; // the page's own words for a failed start say more
    this.serverEnd = endReason;
    this.heardServerEnd();
    const words = describeEndReason(endReason);
    if (this.state === "connecting" || this.state === "live") this.#finish({ reason: endReason, fromServer: true, words });
    else if (this.state === "ended") this.#setState("ended", words, false);
  }

  #waitFor(types) {
    return new Promise((resolve) => {
      const waiter = { types, resolve: (type) => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(type);
      } };
      const timer = setTimeout(() => waiter.resolve(null), ACK_TIMEOUT_MS);
      this.waiters.push(waiter);
    });
  }

  // The one way out, whoever asked for it.

  // `reason` is a SessionEndReason (API.md §2.4) or, for a failed start, <STAGE>_FAILED.
  #finish({ reason, words, fromServer = false, failed = false, stopAtService = true }) {
    if (this.finishing) return this.finishing;
    this.endReason = reason;
    this.#setState("ending");
    if (!fromServer) this.client("client.stop_requested", { reason });
    this.abortJoin?.();
    clearInterval(this.keepAliveTimer);
    for (const waiter of [...this.waiters]) waiter.resolve(null);
    this.finishing = (async () => {
      if (this.starting && stopAtService) {
        // A stop must not overtake the start it cancels.
        await withTimeout(this.starting.catch(() => {}), STOP_TIMEOUT_MS);
        try {
          const stopReason = DELIBERATE_ENDS.has(reason) ? "USER_CLOSED" : "USER_DISCONNECTED";
          await withTimeout(this.api.stop(stopReason), STOP_TIMEOUT_MS);
        } catch (error) {
          this.client("client.error", { message: error.message, stage: "stop" });
        }
      }
      await this.room?.disconnect();
      for (const who of ["user", "avatar"]) this.view.speaking(who, false);
      this.client("client.stopped", { reason });
      // Ended from outside: the server says by whom as soon as it has stored LiveAvatar's event.
      if (fromServer) await withTimeout(this.serverEndHeard, SERVER_END_WAIT_MS);
      if (this.serverEnd && !failed) words = describeEndReason(this.serverEnd);
      this.#setState("ended", words, failed);
      await this.forwarder.close();
    })();
    return this.finishing;
  }

  #setState(state, words = "", failed = false) {
    this.state = state;
    this.view.state(state, words, failed);
  }
}

// Words for a room that closed without the session saying it stopped.
function describeDisconnect(reason) {
  switch (reason) {
    case DisconnectReason.ROOM_DELETED:
    case DisconnectReason.ROOM_CLOSED:
      return "The avatar service closed the conversation.";
    case DisconnectReason.DUPLICATE_IDENTITY:
      return "The conversation was opened in another tab or window.";
    case DisconnectReason.SERVER_SHUTDOWN:
      return "The avatar service is restarting. Please start a new conversation.";
    default:
      return "The connection to the avatar was lost.";
  }
}

function withTimeout(promise, ms) {
  let timer;
  return Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))])
    .finally(() => clearTimeout(timer));
}
