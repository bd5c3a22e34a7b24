import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ClientSession, startServer } from "../../../src/index.ts";
import { silentLogger } from "../../../src/logger.ts";
import { checkEcho, type Contender } from "./types.ts";

/** perilink: the demo echo app; one session, one channel. */
export const perilink: Contender = {
  label: "perilink",

  async serve(options = {}) {
    const stateDir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-"));
    const server = await startServer({
      access: "open",
      listen: ["127.0.0.1:0"],
      stateDir,
      logger: silentLogger,
      rescanIntervalMs: 0,
      control: false,
      ...(options.limits ? { limits: options.limits } : {}),
    });
    const ep = server.endpoints()[0];
    if (!ep) throw new Error("perilink server has no endpoint");
    return {
      port: ep.port,
      handled: () => server.stats.requests,
      info: () => ({ sessions: server.status().sessions }),
      async close() {
        await server.drain(1000);
        rmSync(stateDir, { recursive: true, force: true });
      },
    };
  },

  async connect(port, payload) {
    const session = await ClientSession.connect({ host: "127.0.0.1", port });
    const channel = await session.openChannel("demo");
    return {
      send: async () => checkEcho(await channel.request(payload), payload),
      info: () => ({ sessions: 1, channels: session.channelCount }),
      async close() {
        channel.close();
        await session.close();
      },
    };
  },
};
