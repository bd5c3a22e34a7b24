/**
 * Child process for bench/sessions.ts: runs one job against servers started
 * by the parent, answers with its result, and exits. A fresh process per job,
 * so that memory and socket figures are this job's alone.
 *
 *   ← fanout {...}        → result {...}   N apps × every address of S servers, one contender
 *   ← latency {...}       → result {...}   client.connect() latency: cache hit, UDP probe, new TCP session
 *   ← shared {...}        → measure-start, measure-end, then result {...}   load through one shared session
 */
import http from "node:http";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { createClient, type PerilinkClient } from "../../../src/client/client.ts";
import type { Link } from "../../../src/client/link.ts";
import { GcCounter, type GcCounts } from "../gc.ts";
import { runLoad, type LoadResult } from "../load.ts";
import { SocketSampler } from "../os_sockets.ts";
import { RawRpcClient } from "../raw_rpc.ts";
import { sleep, tell, type Message } from "../proc.ts";
import type { Endpoint } from "./sessions_server.ts";

setFlagsFromString("--expose-gc");
const collect = runInNewContext("gc") as () => void;

export type FanoutContender = "perilink" | "undici" | "http";

export interface FanoutJob {
  type: "fanout";
  contender: FanoutContender;
  /** servers[s] = the addresses of server s. */
  servers: Endpoint[][];
  apps: number;
  requestsPerConnection: number;
  payloadBytes: number;
  /** Every logical connection stops after this long, done or not. */
  maxMs: number;
  sampleEveryMs: number;
}

export interface FanoutResult {
  type: "result";
  contender: FanoutContender;
  logicalConnections: number;
  requests: number;
  /** Logical connections that did not finish their requests within maxMs. */
  unfinished: number;
  runMs: number;
  /** OS view: established TCP sockets of this process to the servers' ports. */
  socketsAtEnd: number;
  socketsPeak: number;
  socketsDistinct: number;
  samples: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  heapBeforeKiB: number;
  heapAfterKiB: number;
  info: Record<string, unknown>;
}

export type LatencyCase = "hit" | "probe" | "tcp" | "first" | "rtt" | "raw";

export interface LatencyJob {
  type: "latency";
  /** The addresses of one server: [0] is used for cache hits and new sessions, [1] as the "new address". */
  endpoints: Endpoint[];
  /** A raw TCP RPC echo server (bench/lib/raw_rpc.ts), for the round-trip floor. */
  rawEndpoint: Endpoint;
  counts: Record<LatencyCase, number>;
  warmup: Record<LatencyCase, number>;
  /** Iterations of each case per turn: the cases take turns in this order. */
  batch: Record<LatencyCase, number>;
  order: LatencyCase[];
  /** Bound of the warm-up, and again of the measurement. */
  maxMs: number;
}

export interface LatencyResult {
  type: "result";
  /** Connect latencies in µs, in the order measured. */
  samples: Record<LatencyCase, number[]>;
  /** Sockets the client held after each case's loop (the anchor sessions only). */
  socketsAfter: Record<LatencyCase, number>;
  /** Client CPU time (user + system) per measured iteration, µs; includes closing the link (and, for tcp/first, the session). */
  cpuUsPerOp: Record<LatencyCase, number>;
}

export interface SharedJob {
  type: "shared";
  endpoint: Endpoint;
  links: number;
  concurrency: number;
  payloadBytes: number;
  warmupMs: number;
  durationMs: number;
  maxRequests: number;
}

export interface SharedResult {
  type: "result";
  load: LoadResult;
  socketsInUse: number;
  osSockets: number;
  sessionRows: number;
  servers: number;
  gc: GcCounts;
  cpuUs: number;
}

const hostPort = (e: Endpoint): string => (e.host.includes(":") ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`);

function checkEcho(got: Uint8Array, payload: Uint8Array): void {
  if (got.byteLength !== payload.byteLength) throw new Error(`echo of ${payload.byteLength} bytes came back as ${got.byteLength} bytes`);
}

function memory(): { rssKiB: number; heapKiB: number } {
  collect();
  collect();
  const m = process.memoryUsage();
  return { rssKiB: m.rss / 1024, heapKiB: m.heapUsed / 1024 };
}

/** One contender's way of opening a logical connection and sending a request on it. */
interface FanoutClient {
  open(app: string, e: Endpoint): Promise<(payload: Buffer) => Promise<Uint8Array>>;
  info(): Record<string, unknown>;
  close(): Promise<void>;
}

async function fanoutClient(contender: FanoutContender): Promise<FanoutClient> {
  switch (contender) {
    case "perilink": {
      const client = createClient();
      const links: Link[] = [];
      let peakInUse = 0;
      return {
        async open(app, e) {
          const link = await client.connect({ host: e.host, port: e.port, app });
          links.push(link);
          peakInUse = Math.max(peakInUse, client.socketsInUse);
          return (payload) => link.request(payload);
        },
        info() {
          const rows = client.sessions();
          return {
            socketsInUse: client.socketsInUse,
            socketsInUseAfterConnects: peakInUse,
            sessionRows: rows.length,
            servers: new Set(rows.map((r) => r.serverId)).size,
          };
        },
        async close() {
          for (const l of links) l.close();
          await client.close();
        },
      };
    }
    case "undici": {
      const { Agent } = await import("undici");
      // A process-wide dispatcher: every application shares it.
      const agent = new Agent();
      return {
        async open(_app, e) {
          const origin = `http://${hostPort(e)}`;
          return async (payload) => {
            const res = await agent.request({ origin, path: "/", method: "POST", body: payload });
            return await res.body.bytes();
          };
        },
        info: () => ({}),
        close: () => agent.close(),
      };
    }
    case "http": {
      const agent = new http.Agent({ keepAlive: true });
      return {
        async open(_app, e) {
          return (payload) =>
            new Promise<Uint8Array>((resolve, reject) => {
              const req = http.request(
                { host: e.host, port: e.port, method: "POST", path: "/", agent, headers: { "content-length": payload.byteLength } },
                (res) => {
                  const chunks: Buffer[] = [];
                  res.on("data", (c: Buffer) => chunks.push(c));
                  res.on("end", () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
                  res.on("error", reject);
                },
              );
              req.on("error", reject);
              req.end(payload);
            });
        },
        info: () => ({
          sockets: Object.values(agent.sockets).reduce((n, l) => n + (l?.length ?? 0), 0),
          freeSockets: Object.values(agent.freeSockets).reduce((n, l) => n + (l?.length ?? 0), 0),
        }),
        async close() {
          agent.destroy();
        },
      };
    }
  }
}

async function fanout(job: FanoutJob): Promise<FanoutResult> {
  const payload = Buffer.alloc(job.payloadBytes, 0x61);
  const client = await fanoutClient(job.contender);
  const ports = job.servers.flat().map((e) => e.port);
  const before = memory();
  const sampler = new SocketSampler(ports);
  sampler.start(job.sampleEveryMs);
  const t0 = performance.now();
  const deadline = t0 + job.maxMs;
  let requests = 0;
  let unfinished = 0;
  const tasks: Promise<void>[] = [];
  for (let a = 0; a < job.apps; a++) {
    for (const server of job.servers) {
      for (const e of server) {
        tasks.push(
          (async () => {
            const send = await client.open(`app${a}`, e);
            let i = 0;
            for (; i < job.requestsPerConnection && performance.now() < deadline; i++) {
              checkEcho(await send(payload), payload);
              requests++;
            }
            if (i < job.requestsPerConnection) unfinished++;
          })(),
        );
      }
    }
  }
  await Promise.all(tasks);
  const runMs = performance.now() - t0;
  sampler.stop();
  const socketsAtEnd = sampler.sample();
  const after = memory();
  const info = client.info();
  await client.close();
  return {
    type: "result",
    contender: job.contender,
    logicalConnections: tasks.length,
    requests,
    unfinished,
    runMs,
    socketsAtEnd,
    socketsPeak: sampler.peak,
    socketsDistinct: sampler.seen.size,
    samples: sampler.samples,
    rssBeforeKiB: before.rssKiB,
    rssAfterKiB: after.rssKiB,
    heapBeforeKiB: before.heapKiB,
    heapAfterKiB: after.heapKiB,
    info,
  };
}

/** Polls (1 ms) until `done()` or `ms` pass; throws on the latter. */
async function until(done: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!done()) {
    if (performance.now() > end) throw new Error(`${what} did not happen within ${ms} ms`);
    await sleep(1);
  }
}

/**
 * One client per case, each set up so that every measured connect takes the path named:
 *   hit   — default client holding a session (anchor link) to the server; connects to the address it already used.
 *   probe — client with identityTtlMs 0 holding a session via endpoints[0]; connects to endpoints[1], which it
 *           must identify by a UDP probe every time (≥ 2 ms pass between connects, so the 0 ms identity expires).
 *   tcp   — client with lingerMs 0 and the address's identity cached; each connect opens a new TCP session
 *           (the previous one is closed and gone before the next connect).
 *   first — lingerMs 0 and identityTtlMs 0: first contact, a UDP probe and then a new TCP session.
 * And two references, timed the same way:
 *   rtt   — one 64-byte echo request on the hit client's open link: the same round trip a cache-hit connect waits for.
 *   raw   — one 64-byte echo on the raw TCP RPC of bench/lib/raw_rpc.ts: what a round trip costs with nothing in the way.
 */
async function latency(job: LatencyJob): Promise<LatencyResult> {
  const [e0, e1] = job.endpoints;
  if (!e0 || !e1) throw new Error("latency needs two addresses of one server");
  const none = (): Record<LatencyCase, number> => ({ hit: 0, probe: 0, tcp: 0, first: 0, rtt: 0, raw: 0 });
  const samples: Record<LatencyCase, number[]> = { hit: [], probe: [], tcp: [], first: [], rtt: [], raw: [] };
  const socketsAfter = none();
  const cpuUsPerOp = none();
  const at = (e: Endpoint, app: string) => ({ host: e.host, port: e.port, app });
  const payload = Buffer.alloc(64, 0x61);

  const clients: Record<"hit" | "probe" | "tcp" | "first", PerilinkClient> = {
    hit: createClient(),
    probe: createClient({ identityTtlMs: 0 }),
    tcp: createClient({ lingerMs: 0 }),
    first: createClient({ lingerMs: 0, identityTtlMs: 0 }),
  };
  const anchors = [await clients.hit.connect(at(e0, "anchor")), await clients.probe.connect(at(e0, "anchor"))];
  const raw = await RawRpcClient.connect(job.rawEndpoint.host, job.rawEndpoint.port);
  // Prime the tcp client's identity cache, then let its session go.
  (await clients.tcp.connect(at(e0, "prime"))).close();
  await until(() => clients.tcp.socketsInUse === 0, 3000, "tcp client session close");

  const once = async (c: LatencyCase, into: number[] | null): Promise<void> => {
    if (c === "rtt" || c === "raw") {
      const t0 = performance.now();
      checkEcho(c === "rtt" ? await anchors[0]!.request(payload) : await raw.request(payload), payload);
      into?.push((performance.now() - t0) * 1000);
      return;
    }
    const client = clients[c];
    if (c === "probe" || c === "first") await sleep(2); // the 0 ms identity must have expired
    const e = c === "probe" ? e1 : e0;
    const t0 = performance.now();
    const link = await client.connect(at(e, "app"));
    const t1 = performance.now();
    into?.push((t1 - t0) * 1000);
    link.close();
    if (c === "tcp" || c === "first") {
      await until(() => client.socketsInUse === 0, 3000, `${c} client session close`);
      await sleep(1);
    }
  };

  // The cases take turns in small batches (in job.order), so that each sees the same
  // conditions on the host; warm-up batches first, unmeasured.
  const cpuUs = none();
  const run = async (counts: Record<LatencyCase, number>, measure: boolean): Promise<void> => {
    const done = none();
    const batches = Math.max(1, Math.ceil(Math.max(...job.order.map((c) => counts[c] / job.batch[c]))));
    const end = performance.now() + job.maxMs;
    for (let b = 0; b < batches && performance.now() < end; b++) {
      for (const c of job.order) {
        const n = Math.min(job.batch[c], counts[c] - done[c]);
        const cpu0 = process.cpuUsage();
        for (let i = 0; i < n; i++) await once(c, measure ? samples[c] : null);
        const cpu = process.cpuUsage(cpu0);
        if (measure) cpuUs[c] += cpu.user + cpu.system;
        done[c] += n;
      }
    }
  };
  await run(job.warmup, false);
  await run(job.counts, true);
  for (const c of job.order) {
    cpuUsPerOp[c] = cpuUs[c] / samples[c].length;
    socketsAfter[c] = c === "rtt" || c === "raw" ? NaN : clients[c].socketsInUse;
  }
  for (const a of anchors) a.close();
  await raw.close();
  await Promise.all(Object.values(clients).map((c) => c.close()));
  return { type: "result", samples, socketsAfter, cpuUsPerOp };
}

async function shared(job: SharedJob): Promise<SharedResult> {
  const payload = Buffer.alloc(job.payloadBytes, 0x61);
  const client = createClient();
  const links: Link[] = [];
  for (let i = 0; i < job.links; i++) links.push(await client.connect({ host: job.endpoint.host, port: job.endpoint.port, app: `app${i}` }));
  const rows = client.sessions();
  const servers = new Set(rows.map((r) => r.serverId)).size;
  // Each request goes to the link with the fewest in flight: with concurrency = links × k, every link keeps k in flight.
  const inflight = new Array<number>(links.length).fill(0);
  const send = async (): Promise<void> => {
    let best = 0;
    for (let i = 1; i < inflight.length; i++) if (inflight[i]! < inflight[best]!) best = i;
    inflight[best]!++;
    try {
      checkEcho(await links[best]!.request(payload), payload);
    } finally {
      inflight[best]!--;
    }
  };
  const gc = new GcCounter();
  let counts = gc.stop();
  let cpuAtStart = process.cpuUsage();
  let cpuUs = 0;
  const load = await runLoad(send, {
    concurrency: job.concurrency,
    warmupMs: job.warmupMs,
    durationMs: job.durationMs,
    maxRequests: job.maxRequests,
    onMeasureStart() {
      cpuAtStart = process.cpuUsage();
      gc.start();
      void tell({ type: "measure-start" });
    },
    onMeasureEnd() {
      counts = gc.stop();
      const cpu = process.cpuUsage(cpuAtStart);
      cpuUs = cpu.user + cpu.system;
      void tell({ type: "measure-end" });
    },
  });
  const osSockets = new SocketSampler([job.endpoint.port]).sample();
  const socketsInUse = client.socketsInUse;
  for (const l of links) l.close();
  await client.close();
  return { type: "result", load, socketsInUse, osSockets, sessionRows: rows.length, servers, gc: counts, cpuUs };
}

process.on("disconnect", () => process.exit(0));
// Bounded: no job runs for more than five minutes.
setTimeout(() => {
  console.error("sessions client: job overran 5 minutes");
  process.exit(1);
}, 300_000).unref();
process.once("message", async (raw) => {
  const m = raw as Message;
  try {
    const result =
      m.type === "fanout" ? await fanout(m as unknown as FanoutJob)
      : m.type === "latency" ? await latency(m as unknown as LatencyJob)
      : m.type === "shared" ? await shared(m as unknown as SharedJob)
      : null;
    if (result === null) throw new Error(`unknown job "${m.type}"`);
    await tell(result as unknown as Message);
    process.exit(0);
  } catch (err) {
    console.error(err);
    process.exit(1);
  }
});
