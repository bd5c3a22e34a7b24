import os from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { RunRequest } from "./lib/children/client.ts";
import { CONTENDER_NAMES, loadContender } from "./lib/contenders/index.ts";
import type { GcCounts } from "./lib/gc.ts";
import type { LoadResult } from "./lib/load.ts";
import { Child } from "./lib/proc.ts";
import { machineLine, startRun, type Report } from "./lib/result_file.ts";
import { median, per100k } from "./lib/stats.ts";
import { num } from "./lib/table.ts";
import { measureIdleRss, measureSessionRss, type IdleRss, type SessionRss } from "./lib/memory.ts";

/**
 * Request/response throughput over loopback, client and server in separate
 * processes: perilink against two baselines — a raw length-prefixed TCP RPC,
 * and the same RPC batching its writes per event-loop turn on both sides (the
 * practical limit for Node on one connection) — and against that batched RPC
 * over TLS 1.3, undici over HTTP/1.1 and over HTTPS, and node:http2. Plus idle
 * memory figures.
 */

const SERVER_CHILD = fileURLToPath(new URL("./lib/children/server.ts", import.meta.url));
const CLIENT_CHILD = fileURLToPath(new URL("./lib/children/client.ts", import.meta.url));
const BASELINE = "raw";
/** The second baseline: raw RPC with one write per event-loop turn each way. */
const BATCHED = "raw-batched";
/** The batched raw RPC over TLS 1.3: what perilink's sealed sessions are compared with. */
const TLS = "raw-tls";

interface Run {
  contender: string;
  round: number;
  /** 1-minute load average when the run started: other work on the machine shows here. */
  loadavg: number;
  load: LoadResult;
  clientGc: GcCounts;
  serverGc: GcCounts;
  serverRequests: number;
  clientCpuUs: number;
  serverCpuUs: number;
  clientMinorPer100k: number;
  serverMinorPer100k: number;
  clientInfo: Record<string, unknown>;
}

interface Summary {
  contender: string;
  label: string;
  reqPerSec: number;
  p50Us: number;
  p99Us: number;
  clientMinorPer100k: number;
  serverMinorPer100k: number;
  clientCpuUsPerReq: number;
  serverCpuUsPerReq: number;
  vsBaseline: number;
  /** req/s ÷ the batched baseline's req/s. */
  vsBatched: number;
}

/** One measurement: fresh server and client processes, then both stopped. */
async function runOnce(contender: string, round: number, settings: Omit<RunRequest, "type" | "contender" | "port">): Promise<Run> {
  const loadavg = os.loadavg()[0]!;
  const server = new Child(SERVER_CHILD, [contender]);
  let client: Child | null = null;
  try {
    const { port } = await server.next<{ type: string; port: number }>("ready", 20_000);
    client = new Child(CLIENT_CHILD);
    client.send({ type: "run", contender, port, ...settings } satisfies RunRequest);
    await client.next("measure-start", settings.warmupMs + 20_000);
    server.send({ type: "window-start" });
    const r = await client.next<{ type: string; load: LoadResult; gc: GcCounts; cpuUs: number; info: Record<string, unknown> }>(
      "result",
      settings.durationMs + 20_000,
    );
    server.send({ type: "window-end" });
    const s = await server.next<{ type: string; gc: GcCounts; cpuUs: number; requests: number }>("window", 5000);
    return {
      contender,
      round,
      loadavg,
      load: r.load,
      clientGc: r.gc,
      serverGc: s.gc,
      serverRequests: s.requests,
      clientCpuUs: r.cpuUs,
      serverCpuUs: s.cpuUs,
      clientMinorPer100k: per100k(r.gc.minor, r.load.requests),
      serverMinorPer100k: per100k(s.gc.minor, s.requests),
      clientInfo: r.info,
    };
  } finally {
    await client?.stop();
    server.send({ type: "stop" });
    await server.stop();
  }
}

async function summarize(names: string[], runs: Run[]): Promise<Summary[]> {
  const of = (name: string, f: (r: Run) => number): number => median(runs.filter((r) => r.contender === name).map(f));
  const baseline = of(BASELINE, (r) => r.load.reqPerSec);
  const batched = of(BATCHED, (r) => r.load.reqPerSec);
  const out: Summary[] = [];
  for (const name of names) {
    const reqPerSec = of(name, (r) => r.load.reqPerSec);
    out.push({
      contender: name,
      label: (await loadContender(name)).label,
      reqPerSec,
      p50Us: of(name, (r) => r.load.p50Us),
      p99Us: of(name, (r) => r.load.p99Us),
      clientMinorPer100k: of(name, (r) => r.clientMinorPer100k),
      serverMinorPer100k: of(name, (r) => r.serverMinorPer100k),
      clientCpuUsPerReq: of(name, (r) => r.clientCpuUs / r.load.requests),
      serverCpuUsPerReq: of(name, (r) => r.serverCpuUs / r.serverRequests),
      vsBaseline: reqPerSec / baseline,
      vsBatched: reqPerSec / batched,
    });
  }
  return out;
}

function report(out: Report, summary: Summary[], runs: Run[], idle: IdleRss | null, sessions: SessionRss | null): void {
  out.table(
    ["contender", "req/s", "p50 µs", "p99 µs", "client minor GC/100k", "server minor GC/100k", "× raw", "× batched"],
    summary.map((s) => [
      s.label,
      num(s.reqPerSec),
      num(s.p50Us),
      num(s.p99Us),
      num(s.clientMinorPer100k, 1),
      num(s.serverMinorPer100k, 1),
      num(s.vsBaseline, 2),
      num(s.vsBatched, 2),
    ]),
  );
  const by = (name: string): Summary | undefined => summary.find((s) => s.contender === name);
  const p = by("perilink");
  const raw = by(BASELINE);
  const batched = by(BATCHED);
  const undici = by("undici");
  const rawTls = by(TLS);
  const undiciHttps = by("undici-https");
  const rawCpu = raw ? raw.clientCpuUsPerReq + raw.serverCpuUsPerReq : NaN;
  const batchedCpu = batched ? batched.clientCpuUsPerReq + batched.serverCpuUsPerReq : NaN;
  out.line("");
  out.table(
    ["contender", "client CPU µs/req", "server CPU µs/req", "total", "× raw", "× batched"],
    summary.map((s) => {
      const total = s.clientCpuUsPerReq + s.serverCpuUsPerReq;
      return [
        s.label,
        num(s.clientCpuUsPerReq, 2),
        num(s.serverCpuUsPerReq, 2),
        num(total, 2),
        num(total / rawCpu, 2),
        num(total / batchedCpu, 2),
      ];
    }),
  );
  if (p) {
    const pCpu = p.clientCpuUsPerReq + p.serverCpuUsPerReq;
    const others = summary.filter((s) => s !== p);
    out.line("");
    out.table(
      ["perilink ÷", "req/s", "CPU per request (client + server)"],
      others.map((s) => [s.label, num(p.reqPerSec / s.reqPerSec, 2), num(pCpu / (s.clientCpuUsPerReq + s.serverCpuUsPerReq), 2)]),
    );
  }
  out.line("");
  if (p && raw) out.line(`perilink / raw    = ${num(p.reqPerSec / raw.reqPerSec, 2)}  (target >= 1.00: ${p.reqPerSec >= raw.reqPerSec ? "met" : "NOT met"})`);
  if (p && batched) {
    out.line(`perilink / raw batched per turn = ${num(p.reqPerSec / batched.reqPerSec, 2)}  (goal >= 0.80: ${p.reqPerSec >= 0.8 * batched.reqPerSec ? "met" : "NOT met"})`);
  }
  if (p && undici) out.line(`perilink / undici = ${num(p.reqPerSec / undici.reqPerSec, 2)}  (target >= 10: ${p.reqPerSec >= 10 * undici.reqPerSec ? "met" : "NOT met"})`);
  if (p && rawTls) {
    out.line(`perilink / raw batched over TLS = ${num(p.reqPerSec / rawTls.reqPerSec, 2)}  (target >= 1.00: ${p.reqPerSec >= rawTls.reqPerSec ? "met" : "NOT met"})`);
  }
  if (p && undiciHttps) {
    out.line(
      `perilink / undici HTTPS = ${num(p.reqPerSec / undiciHttps.reqPerSec, 2)}  (target >= 5: ${p.reqPerSec >= 5 * undiciHttps.reqPerSec ? "met" : "NOT met"})`,
    );
  }
  for (const name of ["undici", "undici-https"]) {
    const conns = runs.filter((r) => r.contender === name).map((r) => r.clientInfo.connections);
    if (conns.length > 0) out.line(`${name} Pool connections open at the end of each run: ${conns.join(", ")}`);
  }
  const tlsRuns = runs.filter((r) => r.contender === TLS).map((r) => `${String(r.clientInfo.protocol)} ${String(r.clientInfo.cipher)}`);
  if (tlsRuns.length > 0) out.line(`${TLS} negotiated: ${[...new Set(tlsRuns)].join("; ")}`);
  if (idle) {
    out.line("");
    out.line(`idle RSS, perilink serve (dist/node20 bundle): ${num(idle.perilinkServeKiB)} KiB`);
    out.line(`idle RSS, node -e "setInterval(()=>{},1000)": ${num(idle.nodeIdleKiB)} KiB`);
    out.line(`difference:                                   ${num(idle.perilinkServeKiB - idle.nodeIdleKiB)} KiB`);
  }
  if (sessions) {
    out.line(
      `RSS per idle perilink session (${num(sessions.sessions)} sessions): server ${num(sessions.serverKiBPerSession, 1)} KiB` +
        ` (heap ${num(sessions.serverHeapKiBPerSession, 1)} KiB), client ${num(sessions.clientKiBPerSession, 1)} KiB`,
    );
  }
}

/** Median of each field over several measurements. */
function medianOf<T extends object>(xs: T[]): T {
  const first = xs[0]!;
  const out = {} as Record<string, number>;
  for (const k of Object.keys(first)) out[k] = median(xs.map((x) => (x as Record<string, number>)[k]!));
  return out as T;
}

export async function main(args: string[]): Promise<void> {
  const run = startRun("throughput", args);
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string", default: "3" },
      "warmup-ms": { type: "string", default: "1000" },
      "duration-ms": { type: "string", default: "3000" },
      only: { type: "string" },
      "no-memory": { type: "boolean", default: false },
    },
  });
  const rounds = Number(values.rounds);
  const names = values.only ? values.only.split(",") : [...CONTENDER_NAMES];
  for (const b of [BASELINE, BATCHED]) if (!names.includes(b)) names.push(b);
  // Loads every contender now (an unknown name fails before any run) and makes
  // what their processes share, e.g. the TLS certificate, made here and now.
  for (const n of names) (await loadContender(n)).setup?.();
  const settings = {
    concurrency: 64,
    payloadBytes: 64,
    warmupMs: Number(values["warmup-ms"]),
    durationMs: Number(values["duration-ms"]),
    maxRequests: 1_500_000,
  };
  for (const [k, v] of Object.entries({ rounds, ...settings })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${k} must be a positive integer, not ${v}`);
  }

  console.log(
    run.describe(
      `throughput: ${settings.concurrency} requests in flight, ${settings.payloadBytes}-byte payloads, one connection ` +
        `(undici: a default Pool; TLS: 1.3, Node's defaults, a self-signed certificate made at start), 127.0.0.1, ` +
        `client and server in separate processes; warm-up ${settings.warmupMs} ms, ` +
        `then ${settings.durationMs} ms or ${num(settings.maxRequests)} requests; median of ${rounds} interleaved runs`,
    ),
  );
  console.log(`${machineLine(run.machine)}\n`);

  const runs: Run[] = [];
  for (let round = 1; round <= rounds; round++) {
    // Rotate the order each round so that no contender always runs first.
    const order = names.map((_, i) => names[(i + round - 1) % names.length]!);
    for (const name of order) {
      const r = await runOnce(name, round, settings);
      runs.push(r);
      console.log(
        `  round ${round} ${name.padEnd(12)} ${num(r.load.reqPerSec).padStart(9)} req/s  p50 ${num(r.load.p50Us)} µs` +
          `  p99 ${num(r.load.p99Us)} µs  (load average ${num(r.loadavg, 2)})`,
      );
    }
  }
  const summary = await summarize(names, runs);

  let idle: IdleRss | null = null;
  let sessions: SessionRss | null = null;
  const idleRuns: IdleRss[] = [];
  const sessionRuns: SessionRss[] = [];
  if (!values["no-memory"]) {
    for (let i = 0; i < rounds; i++) idleRuns.push(await measureIdleRss());
    for (let i = 0; i < rounds; i++) sessionRuns.push(await measureSessionRss(1000));
    idle = medianOf(idleRuns);
    sessions = medianOf(sessionRuns);
  }

  report(run.report, summary, runs, idle, sessions);
  console.log("\n" + run.report.toString());
  const file = run.write({
    settings: { ...settings, rounds, baseline: BASELINE, batchedBaseline: BATCHED },
    medians: summary,
    runs,
    memory: { idleRss: idle, idleRssRuns: idleRuns, sessionRss: sessions, sessionRssRuns: sessionRuns },
  });
  console.log(`\nresults: ${file}`);
}
