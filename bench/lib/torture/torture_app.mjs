/**
 * The app the torture benchmark's server runs: the demo app's answers (every
 * request echoed; `info` answered with the server id, pid and generation as
 * JSON, which the legitimate load asks), and a one-way message handler that
 * awaits before it is done with the payload — as an app that writes what it
 * is sent to something slow (a printer, a flash card) does. The async
 * message flood aims at it.
 */
const INFO = Buffer.from("info");
const later = (ms) => new Promise((r) => setTimeout(r, ms));
let kept = 0;

export default {
  request(payload, ctx) {
    if (payload.length === 4 && Buffer.from(payload.buffer, payload.byteOffset, 4).equals(INFO)) {
      return JSON.stringify({ serverId: ctx.serverId, pid: process.pid, generation: ctx.generation, app: ctx.app });
    }
    return payload;
  },
  async message(payload) {
    await later(50);
    kept += payload[payload.length - 1] ?? 0; // the payload is still used after the await
  },
};
