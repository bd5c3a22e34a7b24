import type { RequestContext, SessionApp } from "./app.ts";

/**
 * The demo application served by `npm start`: echoes every request, and
 * answers the request `info` with the server identifier, process id and
 * generation as JSON.
 */
const demo: SessionApp = {
  request(payload: Uint8Array, ctx: RequestContext) {
    if (payload.length === 4 && Buffer.from(payload.buffer, payload.byteOffset, 4).toString("latin1") === "info") {
      return JSON.stringify({ serverId: ctx.serverId, pid: process.pid, generation: ctx.generation, app: ctx.app });
    }
    return payload;
  },
};

export default demo;
