// Chooses the room: LiveKit's Room against the real service, or the emulated room (same subset of
// the interface) against the built-in emulator. Each is imported only when needed, so the page
// does not download livekit-client on the emulator, nor the emulator's adapter in production.

export { AVATAR_IDENTITY, RoomEvent, agentIdentity } from "./room-names.js";

export async function createRoom({ emulator }) {
  if (emulator) {
    const { EmulatedRoom } = await import("./emulated-room.js");
    return new EmulatedRoom();
  }
  try {
    const { Room } = await import("../vendor/livekit-client.min.js");
    return new Room({ adaptiveStream: true, dynacast: true });
  } catch {
    throw new Error("The video client could not be loaded. Reload the page to try again.");
  }
}
