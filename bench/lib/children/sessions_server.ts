/**
 * Child process for bench/sessions.ts: one echo server listening on several
 * loopback addresses (each address gets its own port).
 *
 *   argv: perilink|http|raw <addresses as JSON> [perilink probe limits as JSON]
 *   → ready {endpoints: [{host, port}]}
 *   ← stats               → stats {accepted, requests, probes, probesDropped, sessionsOpen}
 *   ← stop                → closes the server and exits
 *
 * perilink: the demo echo app with the default limits (handshake rates off), or the probe rate
 * limits given (the connect benchmark sends hundreds of probes from one source).
 * http: one node:http server per address, echoing the POST body.
 * raw: the raw length-prefixed TCP RPC echo of bench/lib/raw_rpc.ts, one per address (a latency floor).
 */
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type net from "node:net";
import type { AddressInfo, Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { startServer } from "../../../src/server/start_server.ts";
import { createEchoServer } from "../raw_rpc.ts";
import { silentLogger } from "../../../src/logger.ts";
import type { ProbeLimits } from "../../../src/server/probe_responder.ts";
import { tell, type Message } from "../proc.ts";

export interface Endpoint {
  host: string;
  port: number;
}

export type ServerStatsMessage = {
  type: "stats";
  /** TCP connections accepted so far (perilink: sessions accepted). */
  accepted: number;
  requests: number;
  probes: number;
  probesDropped: number;
  sessionsOpen: number;
  /** CPU time of this process so far (user + system), µs. */
  cpuUs: number;
};

interface Running {
  endpoints: Endpoint[];
  stats(): Omit<ServerStatsMessage, "type" | "cpuUs">;
  close(): Promise<void>;
}

/** `[::1]:0` for IPv6, `127.0.0.1:0` for IPv4. */
const listenEntry = (a: string): string => (a.includes(":") ? `[${a}]:0` : `${a}:0`);

async function perilinkServer(addresses: string[], probe: Partial<ProbeLimits>): Promise<Running> {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-sessions-"));
  const server = await startServer({
    access: "open",
    listen: addresses.map(listenEntry),
    stateDir,
    logger: silentLogger,
    rescanIntervalMs: 0,
    control: false,
    probe,
    // The benchmarks measure what sessions cost, not the admission policy: handshake rates off.
    limits: { sessionRatePerPeer: 0, sessionRateGlobal: 0 },
  });
  const byAddress = new Map(server.endpoints().map((e) => [e.address, e.port]));
  const endpoints = addresses.map((host) => {
    const port = byAddress.get(host);
    if (port === undefined) throw new Error(`perilink server is not listening on ${host}`);
    return { host, port };
  });
  return {
    endpoints,
    stats: () => ({
      accepted: server.stats.sessionsAccepted,
      requests: server.stats.requests,
      probes: server.stats.probes,
      probesDropped: server.stats.probesDropped,
      sessionsOpen: server.stats.sessionsOpen,
    }),
    async close() {
      await server.drain(1000);
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

async function httpServer(addresses: string[], _probe: unknown): Promise<Running> {
  let accepted = 0;
  let requests = 0;
  const sockets = new Set<Socket>();
  const servers: http.Server[] = [];
  const endpoints: Endpoint[] = [];
  for (const host of addresses) {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        requests++;
        res.end(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
      });
    });
    server.on("connection", (s: Socket) => {
      accepted++;
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    server.listen(0, host);
    await once(server, "listening");
    servers.push(server);
    endpoints.push({ host, port: (server.address() as AddressInfo).port });
  }
  return {
    endpoints,
    stats: () => ({ accepted, requests, probes: 0, probesDropped: 0, sessionsOpen: sockets.size }),
    async close() {
      for (const s of servers) s.closeAllConnections();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

async function rawServer(addresses: string[], _probe: unknown): Promise<Running> {
  const servers: { server: net.Server; handled(): number }[] = [];
  const endpoints: Endpoint[] = [];
  for (const host of addresses) {
    const s = createEchoServer();
    s.server.listen(0, host);
    await once(s.server, "listening");
    servers.push(s);
    endpoints.push({ host, port: (s.server.address() as AddressInfo).port });
  }
  return {
    endpoints,
    stats: () => ({ accepted: 0, requests: servers.reduce((n, s) => n + s.handled(), 0), probes: 0, probesDropped: 0, sessionsOpen: 0 }),
    async close() {
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.server.close(() => r()))));
    },
  };
}

const SERVERS: Record<string, (addresses: string[], probe: Partial<ProbeLimits>) => Promise<Running>> = {
  perilink: perilinkServer,
  http: httpServer,
  raw: rawServer,
};
const [kind = "", addressesJson = "[]", probeJson = "{}"] = process.argv.slice(2);
const addresses = JSON.parse(addressesJson) as string[];
const start = SERVERS[kind];
const running = start ? await start(addresses, JSON.parse(probeJson) as Partial<ProbeLimits>) : null;
if (running === null) throw new Error(`unknown server kind "${kind}"`);

// Never outlive the parent, nor run for more than ten minutes.
process.on("disconnect", () => process.exit(0));
setTimeout(() => process.exit(1), 600_000).unref();
process.on("message", (raw) => {
  const m = raw as Message;
  if (m.type === "stats") {
    const cpu = process.cpuUsage();
    void tell({ type: "stats", ...running.stats(), cpuUs: cpu.user + cpu.system });
  }
  else if (m.type === "stop") void running.close().finally(() => process.exit(0));
});
void tell({ type: "ready", endpoints: running.endpoints });
