// Chooses the room: LiveKit's Room against the real service, or the emulated room (same subset of
// the interface) against the built-in emulator. Each is imported only when needed, so the page
// does not download livekit-client on the emulator, nor the emulator's adapter in production.

// The RoomEvent names this app listens to, with livekit-client's string values.
export const RoomEvent = {
  ParticipantConnected: "participantConnected",
  ParticipantDisconnected: "participantDisconnected",
  TrackSubscribed: "trackSubscribed",
  DataReceived: "dataReceived",
  ConnectionQualityChanged: "connectionQualityChanged",
  AudioPlaybackStatusChanged: "audioPlaybackChanged",
  Reconnecting: "reconnecting",
  Reconnected: "reconnected",
  Disconnected: "disconnected",
};

export const AVATAR_IDENTITY = "heygen";
export const agentIdentity = (liveavatarSessionId) => `liveavatar-agent-${liveavatarSessionId}`;

export async function createRoom({ emulator }) {
  if (emulator) {
    const { EmulatedRoom } = await import("./emulated-room.mjs");
    return new EmulatedRoom();
  }
  try {
    const { Room } = await import("../vendor/livekit-client.min.mjs");
    return new Room({ adaptiveStream: true, dynacast: true });
  } catch {
    throw new Error("The video client could not be loaded. Reload the page to try again.");
  }
}
