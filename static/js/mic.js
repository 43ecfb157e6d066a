// The visitor's microphone in the room: published with echo cancellation (the avatar's voice
// must not come back as the visitor's speech), muted and unmuted, switched between devices, and
// every failure turned into a state and words the visitor can act on. The official SDK swallows
// these errors; here the session simply carries on by text.

const CAPTURE = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

export class Microphone {
  constructor(room, onChange) {
    this.room = room;
    this.onChange = onChange;
    this.state = "off"; // off | on | muted | denied | missing | error
  }

  get usable() {
    return this.state === "on" || this.state === "muted";
  }

  /** Capture and publish; `muted` publishes it silent (push-to-talk unmutes while held). */
  async enable({ deviceId, muted = false } = {}) {
    try {
      await this.room.localParticipant.setMicrophoneEnabled(true, deviceId ? { ...CAPTURE, deviceId } : CAPTURE);
      if (muted) await this.room.localParticipant.setMicrophoneEnabled(false);
      this.#set(muted ? "muted" : "on");
    } catch (error) {
      const { state, message } = describeMicError(error);
      this.#set(state, message);
    }
  }

  async setMuted(muted) {
    if (!this.usable) return;
    await this.room.localParticipant.setMicrophoneEnabled(!muted);
    this.#set(muted ? "muted" : "on");
  }

  async useDevice(deviceId) {
    if (this.usable) await this.room.switchActiveDevice("audioinput", deviceId);
  }

  #set(state, message = "") {
    this.state = state;
    this.onChange(state, message);
  }
}

/** Audio inputs the browser will name (labels appear once permission is granted). */
export async function listMicrophones() {
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    return devices.filter((device) => device.kind === "audioinput");
  } catch {
    return [];
  }
}

export function describeMicError(error) {
  const name = error?.name ?? "";
  if (name === "NotAllowedError" || name === "SecurityError" || /permission/i.test(error?.message ?? "")) {
    return { state: "denied", message: "The microphone is blocked. Allow it in your browser's site settings to talk; meanwhile you can type your messages." };
  }
  if (name === "NotFoundError" || name === "OverconstrainedError" || !globalThis.navigator?.mediaDevices) {
    return { state: "missing", message: "No microphone was found. Connect one to talk; meanwhile you can type your messages." };
  }
  if (name === "NotReadableError") {
    return { state: "error", message: "The microphone is in use by another application. Close it to talk; meanwhile you can type your messages." };
  }
  return { state: "error", message: `The microphone could not be started (${error?.message || name || "unknown error"}). You can type your messages.` };
}
