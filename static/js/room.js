// The avatar's room is livekit-client's Room, against the real service and the built-in emulator
// (a LiveKit-compatible server) alike; its event and reason names come from livekit-client too.

import { Room } from "../vendor/livekit-client.min.js";

export { DisconnectReason, RoomEvent } from "../vendor/livekit-client.min.js";

export const AVATAR_IDENTITY = "heygen";
export const agentIdentity = (liveavatarSessionId) => `liveavatar-agent-${liveavatarSessionId}`;

// The page ends the conversation itself when it closes (conversation.pageClosing), in order.
export function createRoom() {
  return new Room({ adaptiveStream: true, dynacast: true, disconnectOnPageLeave: false });
}
