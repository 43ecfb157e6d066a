// Names both rooms share (room.js and the emulated room), in a module of their own so neither
// imports the other.

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
