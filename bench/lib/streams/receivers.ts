import https from "node:https";
import net from "node:net";
import type { RequestContext } from "../../../src/server/app.ts";
import { silentLogger } from "../../../src/logger.ts";
import { startServer } from "../../../src/server/start_server.ts";

/**
 * The receiving ends of the streams benchmark's one-upload part: each counts
 * the bytes of one upload and answers with the count. Run in the benchmark's
 * process or in a process of their own (children/stream_receivers.ts).
 */
export interface Receivers {
  raw: number;
  https: number;
  perilink: number;
  close(): Promise<void>;
}

export async function startReceivers(tls: { key: string; cert: string }, stateDir: string): Promise<Receivers> {
  const raw = net.createServer((s) => {
    let n = 0;
    s.on("data", (c: Buffer) => (n += c.length));
    s.on("end", () => s.end(String(n)));
  });
  const secure = https.createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    let n = 0;
    req.on("data", (c: Buffer) => (n += c.length));
    req.on("end", () => res.end(String(n)));
  });
  for (const s of [raw, secure]) await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const app = {
    streams: true,
    async request(_p: Uint8Array, ctx: RequestContext) {
      let n = 0;
      for await (const chunk of ctx.body) n += chunk.length;
      return String(n);
    },
  };
  const server = await startServer({ listen: ["127.0.0.1:0"], stateDir, logger: silentLogger, rescanIntervalMs: 0, access: "open", appObject: app });
  return {
    raw: (raw.address() as net.AddressInfo).port,
    https: (secure.address() as net.AddressInfo).port,
    perilink: server.endpoints()[0]!.port,
    close: async () => {
      raw.close();
      secure.close();
      secure.closeAllConnections();
      await server.drain(1000);
    },
  };
}
