// The subset of livekit-client's Room that this app uses, spoken over the built-in emulator's
// room websocket (ARCHITECTURE.md "The emulated room"). The avatar's video is a drawn face
// (avatar-canvas.js) animated by the avatar.speak_started/ended events that pass through.

import { createAvatarCanvas } from "./avatar-canvas.js";
import { AVATAR_IDENTITY, RoomEvent } from "./room-names.js";

class Emitter {
  #listeners = new Map();

  on(event, listener) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(listener);
    return this;
  }

  off(event, listener) {
    this.#listeners.get(event)?.delete(listener);
    return this;
  }

  emit(event, ...args) {
    for (const listener of [...(this.#listeners.get(event) ?? [])]) listener(...args);
  }
}

class EmulatedTrack {
  constructor(kind, makeElement) {
    this.kind = kind;
    this.makeElement = makeElement;
    this.elements = [];
  }

  attach() {
    const element = this.makeElement();
    this.elements.push(element);
    return element;
  }

  detach() {
    const elements = this.elements.splice(0);
    for (const element of elements) element.remove();
    return elements;
  }
}

class RemoteParticipant {
  constructor(identity, kinds) {
    this.identity = identity;
    this.kinds = kinds;
  }
}

class LocalParticipant {
  constructor(room) {
    this.room = room;
    this.identity = "";
    this.micStream = null;
    this.micOptions = {};
  }

  get isMicrophoneEnabled() {
    return Boolean(this.micStream?.getAudioTracks().some((track) => track.enabled));
  }

  async publishData(bytes, { topic } = {}) {
    const payload = new TextDecoder().decode(bytes);
    this.room.observe(payload);
    this.room.send({ type: "data", topic, payload });
  }

  /** Like LiveKit: the first enable captures and publishes; later calls mute and unmute. */
  async setMicrophoneEnabled(enabled, options = {}) {
    if (enabled && !this.micStream) {
      await this.#capture(options);
      this.room.send({ type: "track_published", kind: "audio", muted: false });
      return;
    }
    if (!this.micStream) return;
    for (const track of this.micStream.getAudioTracks()) track.enabled = enabled;
    this.room.send({ type: "track_muted", kind: "audio", muted: !enabled });
  }

  async switchMicrophone(deviceId) {
    if (!this.micStream) return;
    const enabled = this.isMicrophoneEnabled;
    this.stopMicrophone();
    await this.#capture({ ...this.micOptions, deviceId: { exact: deviceId } });
    for (const track of this.micStream.getAudioTracks()) track.enabled = enabled;
  }

  stopMicrophone() {
    for (const track of this.micStream?.getTracks() ?? []) track.stop();
    this.micStream = null;
  }

  async #capture(options) {
    this.micOptions = options;
    // Nothing is sent to the emulator: the track only has to exist, so that the browser's
    // permission and device errors happen exactly as with LiveKit.
    this.micStream = await navigator.mediaDevices.getUserMedia({ audio: options });
  }
}

export class EmulatedRoom extends Emitter {
  constructor() {
    super();
    this.remoteParticipants = new Map();
    this.localParticipant = new LocalParticipant(this);
    this.socket = null;
    this.avatar = null;
    this.audioContext = null;
    this.disconnected = false;
  }

  /** True when the browser lets the page play sound (autoplay policy), as in LiveKit. */
  get canPlaybackAudio() {
    return this.audioContext?.state !== "suspended";
  }

  connect(url, token) {
    this.#watchAudioPolicy();
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(`${url}?access_token=${encodeURIComponent(token)}`);
      this.socket = socket;
      socket.onmessage = (message) => {
        const frame = JSON.parse(message.data);
        if (frame.type === "joined") {
          this.localParticipant.identity = frame.identity;
          for (const p of frame.participants ?? []) this.remoteParticipants.set(p.identity, new RemoteParticipant(p.identity, p.tracks));
          resolve();
          // LiveKit subscribes to tracks after connect() resolves; so does this.
          setTimeout(() => this.remoteParticipants.forEach((p) => this.#subscribe(p)));
        } else {
          this.#receive(frame);
        }
      };
      socket.onclose = (close) => {
        if (close.code === 4401) reject(new Error("The avatar room refused the access token."));
        else reject(new Error("The connection to the avatar room closed before it was joined."));
        this.#disconnected(this.endReason ?? "CONNECTION_CLOSED");
      };
    });
  }

  async disconnect() {
    if (this.socket?.readyState === WebSocket.OPEN) this.send({ type: "leave" });
    this.socket?.close(1000);
    this.#disconnected("CLIENT_INITIATED");
  }

  async startAudio() {
    await this.audioContext?.resume();
    this.emit(RoomEvent.AudioPlaybackStatusChanged, this.canPlaybackAudio);
  }

  async switchActiveDevice(kind, deviceId) {
    if (kind === "audioinput") await this.localParticipant.switchMicrophone(deviceId);
    return true;
  }

  send(frame) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(frame));
  }

  #receive(frame) {
    switch (frame.type) {
      case "participant_joined": {
        const participant = new RemoteParticipant(frame.identity, frame.tracks);
        this.remoteParticipants.set(frame.identity, participant);
        this.emit(RoomEvent.ParticipantConnected, participant);
        this.#subscribe(participant);
        break;
      }
      case "participant_left": {
        const participant = this.remoteParticipants.get(frame.identity);
        this.remoteParticipants.delete(frame.identity);
        if (participant) this.emit(RoomEvent.ParticipantDisconnected, participant);
        break;
      }
      case "data": {
        this.observe(frame.payload);
        const bytes = new TextEncoder().encode(frame.payload);
        this.emit(RoomEvent.DataReceived, bytes, this.remoteParticipants.get(frame.from), undefined, frame.topic);
        break;
      }
      case "connection_quality":
        this.emit(RoomEvent.ConnectionQualityChanged, frame.quality, this.localParticipant);
        break;
      case "disconnected":
        this.endReason = frame.reason;
        break;
    }
  }

  #subscribe(participant) {
    for (const kind of participant.kinds ?? []) {
      const track = new EmulatedTrack(kind, () => this.#element(participant, kind));
      this.emit(RoomEvent.TrackSubscribed, track, { kind, trackSid: `${participant.identity}-${kind}` }, participant);
    }
  }

  #element(participant, kind) {
    if (kind === "video" && participant.identity === AVATAR_IDENTITY) {
      this.avatar ??= createAvatarCanvas();
      return this.avatar.element;
    }
    // The emulator sends no sound: an empty media element keeps the attach() contract.
    return document.createElement(kind === "video" ? "video" : "audio");
  }

  /** Animate the drawn avatar from the events and commands that pass through the room. */
  observe(payload) {
    if (!this.avatar) return;
    const type = payload.match(/"event_type"\s*:\s*"([^"]+)"/)?.[1];
    if (type === "avatar.speak_started") this.avatar.setSpeaking(true);
    if (type === "avatar.speak_ended") this.avatar.setSpeaking(false);
    if (type === "avatar.start_listening") this.avatar.setListening(true);
    if (type === "avatar.stop_listening") this.avatar.setListening(false);
  }

  // Browsers block sound until the visitor has interacted with the page; an AudioContext shows
  // whether that is the case, so the "tap to enable sound" path works on the emulator too.
  #watchAudioPolicy() {
    if (this.audioContext || !globalThis.AudioContext) return;
    this.audioContext = new AudioContext();
    this.audioContext.onstatechange = () => this.emit(RoomEvent.AudioPlaybackStatusChanged, this.canPlaybackAudio);
  }

  #disconnected(reason) {
    if (this.disconnected) return;
    this.disconnected = true;
    this.localParticipant.stopMicrophone();
    this.avatar?.stop();
    this.audioContext?.close();
    this.emit(RoomEvent.Disconnected, reason);
  }
}
