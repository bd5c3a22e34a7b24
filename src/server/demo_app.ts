import type { RequestContext, SessionApp } from "./app.ts";

/**
 * The demo application served by `npm start`: echoes every request — a
 * streamed one as a streamed response, chunk by chunk as it arrives — and
 * answers the request `info` with the server identifier, process id and
 * generation as JSON.
 */
const demo: SessionApp = {
  streams: true,
  request(payload: Uint8Array, ctx: RequestContext) {
    if (ctx.body.streamed) return ctx.body; // a body is an async iterable of chunks: it streams back as it is read
    if (payload.length === 4 && Buffer.from(payload.buffer, payload.byteOffset, 4).toString("latin1") === "info") {
      return JSON.stringify({ serverId: ctx.serverId, pid: process.pid, generation: ctx.generation, app: ctx.app });
    }
    return payload;
  },
};

export default demo;
