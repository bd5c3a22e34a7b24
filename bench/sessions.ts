import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type {
  FanoutContender,
  FanoutJob,
  FanoutResult,
  LatencyCase,
  LatencyJob,
  LatencyResult,
  SharedJob,
  SharedResult,
} from "./lib/children/sessions_client.ts";
import type { Endpoint, ServerStatsMessage } from "./lib/children/sessions_server.ts";
import { Child } from "./lib/proc.ts";
import { loadAverage, machineLine, startRun, type Report } from "./lib/result_file.ts";
import { median, percentile } from "./lib/stats.ts";
import { num } from "./lib/table.ts";

/**
 * The client session table (src/client/client.ts): one session per server
 * however many applications and addresses use it.
 *
 * 1. fanout — N applications × M addresses × S servers, every application
 *    opening a logical connection to every address and sending requests on
 *    it: perilink (one createClient()) against a shared undici Agent and a
 *    shared node:http Agent (keepAlive) on node:http echo servers. TCP sockets
 *    counted from the OS side, and client memory.
 * 2. connect — latency of client.connect() to a server the client already has
 *    a session with (cache hit; new address identified by a UDP probe) against
 *    one that needs a new TCP session; with two references timed the same way,
 *    a request on an open link and a raw TCP RPC round trip (the floor).
 * 3. shared — load through one shared session: 8 links × 8 in flight against
 *    1 link × 64 in flight.
 *
 * Servers and clients run in separate processes; traffic stays on 127.0.0.0/8 and ::1.
 */

const SERVER_CHILD = fileURLToPath(new URL("./lib/children/sessions_server.ts", import.meta.url));
const CLIENT_CHILD = fileURLToPath(new URL("./lib/children/sessions_client.ts", import.meta.url));
/** Loopback addresses the servers listen on, in the order they are used. */
const ADDRESSES = ["127.0.0.1", "127.0.0.2", "::1", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"];
const FANOUT_CONTENDERS: FanoutContender[] = ["perilink", "undici", "http"];
const FANOUT_LABELS: Record<FanoutContender, string> = {
  perilink: "perilink (one createClient)",
  undici: "undici Agent (shared)",
  http: "node:http Agent keepAlive (shared)",
};
const LATENCY_CASES: LatencyCase[] = ["hit", "probe", "tcp", "first", "rtt", "raw"];
const LATENCY_LABELS: Record<LatencyCase, string> = {
  hit: "(a) connect, cache hit: known address, session open",
  probe: "(b) connect, new address: UDP probe, session open",
  tcp: "(c) connect, no session: new TCP session (identity cached)",
  first: "(d) connect, first contact: UDP probe + new TCP session",
  rtt: "ref: one 64 B request on an open link (same round trip as a)",
  raw: "ref: one 64 B raw TCP RPC request (round-trip floor)",
};
const SCENARIOS = ["fanout", "connect", "shared"] as const;
type Scenario = (typeof SCENARIOS)[number];

interface ServerProc {
  child: Child;
  endpoints: Endpoint[];
}

/** The connect benchmark sends hundreds of UDP probes from one source: above the default rate limit (targets/node20.json). */
const CONNECT_PROBE_LIMITS = { ratePerSecond: 1_000_000, burst: 1_000_000 };

async function startServers(kind: "perilink" | "http" | "raw", count: number, addresses: string[], probe: object = {}): Promise<ServerProc[]> {
  const children = Array.from({ length: count }, () => new Child(SERVER_CHILD, [kind, JSON.stringify(addresses), JSON.stringify(probe)]));
  try {
    return await Promise.all(
      children.map(async (child) => ({ child, endpoints: (await child.next<{ type: string; endpoints: Endpoint[] }>("ready", 30_000)).endpoints })),
    );
  } catch (err) {
    await stopServers(children.map((child) => ({ child, endpoints: [] })));
    throw err;
  }
}

async function serverStats(servers: ServerProc[]): Promise<ServerStatsMessage[]> {
  return Promise.all(
    servers.map((s) => {
      s.child.send({ type: "stats" });
      return s.child.next<ServerStatsMessage>("stats", 5000);
    }),
  );
}

async function stopServers(servers: ServerProc[]): Promise<void> {
  await Promise.all(
    servers.map((s) => {
      if (s.child.process.connected) s.child.send({ type: "stop" });
      return s.child.stop();
    }),
  );
}

/** Runs one job in a fresh client process and returns its result. */
async function runClient<R>(job: FanoutJob | LatencyJob, timeoutMs: number): Promise<R> {
  const client = new Child(CLIENT_CHILD);
  try {
    client.send(job as unknown as { type: string });
    return (await client.next("result", timeoutMs)) as unknown as R;
  } finally {
    await client.stop();
  }
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

// ---------------------------------------------------------------- fanout

interface FanoutRun {
  contender: FanoutContender;
  round: number;
  client: FanoutResult;
  serverAccepted: number;
  serverRequests: number;
  serverProbes: number;
  rssDeltaKiB: number;
  heapDeltaKiB: number;
}

interface FanoutSettings {
  apps: number;
  addresses: number;
  servers: number;
  requestsPerConnection: number;
  payloadBytes: number;
  maxMs: number;
  sampleEveryMs: number;
}

async function fanoutOnce(contender: FanoutContender, round: number, s: FanoutSettings): Promise<FanoutRun> {
  const servers = await startServers(contender === "perilink" ? "perilink" : "http", s.servers, ADDRESSES.slice(0, s.addresses));
  try {
    const job: FanoutJob = {
      type: "fanout",
      contender,
      servers: servers.map((x) => x.endpoints),
      apps: s.apps,
      requestsPerConnection: s.requestsPerConnection,
      payloadBytes: s.payloadBytes,
      maxMs: s.maxMs,
      sampleEveryMs: s.sampleEveryMs,
    };
    const client = await runClient<FanoutResult>(job, s.maxMs + 30_000);
    const stats = await serverStats(servers);
    return {
      contender,
      round,
      client,
      serverAccepted: sum(stats.map((x) => x.accepted)),
      serverRequests: sum(stats.map((x) => x.requests)),
      serverProbes: sum(stats.map((x) => x.probes)),
      rssDeltaKiB: client.rssAfterKiB - client.rssBeforeKiB,
      heapDeltaKiB: client.heapAfterKiB - client.heapBeforeKiB,
    };
  } finally {
    await stopServers(servers);
  }
}

interface FanoutSummary {
  contender: FanoutContender;
  label: string;
  socketsAtEnd: number;
  socketsPeak: number;
  socketsDistinct: number;
  serverAccepted: number;
  serverProbes: number;
  rssDeltaKiB: number;
  heapDeltaKiB: number;
  runMs: number;
  reqPerSec: number;
  unfinished: number;
}

function fanoutSummary(runs: FanoutRun[], names: FanoutContender[]): FanoutSummary[] {
  return names.map((c) => {
    const rs = runs.filter((r) => r.contender === c);
    const of = (f: (r: FanoutRun) => number): number => median(rs.map(f));
    return {
      contender: c,
      label: FANOUT_LABELS[c],
      socketsAtEnd: of((r) => r.client.socketsAtEnd),
      socketsPeak: of((r) => r.client.socketsPeak),
      socketsDistinct: of((r) => r.client.socketsDistinct),
      serverAccepted: of((r) => r.serverAccepted),
      serverProbes: of((r) => r.serverProbes),
      rssDeltaKiB: of((r) => r.rssDeltaKiB),
      heapDeltaKiB: of((r) => r.heapDeltaKiB),
      runMs: of((r) => r.client.runMs),
      reqPerSec: of((r) => (r.client.requests * 1000) / r.client.runMs),
      unfinished: sum(rs.map((r) => r.client.unfinished)),
    };
  });
}

function fanoutReport(out: Report, summary: FanoutSummary[], runs: FanoutRun[], s: FanoutSettings): void {
  out.table(
    ["contender", "sockets at end", "peak sockets", "distinct sockets", "server accepts", "RSS Δ KiB", "heapUsed Δ KiB", "run ms", "req/s"],
    summary.map((x) => [
      x.label,
      num(x.socketsAtEnd),
      num(x.socketsPeak),
      num(x.socketsDistinct),
      num(x.serverAccepted),
      num(x.rssDeltaKiB),
      num(x.heapDeltaKiB),
      num(x.runMs),
      num(x.reqPerSec),
    ]),
  );
  const p = summary.find((x) => x.contender === "perilink");
  if (p) {
    const perRound = runs.filter((r) => r.contender === "perilink").map((r) => r.client.socketsPeak);
    const met = perRound.every((n) => n === s.servers) && runs.filter((r) => r.contender === "perilink").every((r) => r.client.socketsAtEnd === s.servers);
    out.line("");
    out.line(`perilink sockets = S: peak per round ${perRound.join(", ")}, S = ${s.servers}  (target: exactly S: ${met ? "met" : "NOT met"})`);
    const info = runs.filter((r) => r.contender === "perilink").map((r) => r.client.info);
    out.line(
      `perilink session table at the end: ${info.map((i) => `${i.sessionRows} rows / ${i.servers} servers / socketsInUse ${i.socketsInUse}`).join("; ")}`,
    );
    out.line(`perilink UDP probes answered by the servers (median): ${num(p.serverProbes)} for ${num(s.apps * s.addresses * s.servers)} connects to ${num(s.addresses * s.servers)} addresses`);
  }
  const unfinished = summary.filter((x) => x.unfinished > 0);
  for (const x of unfinished) out.line(`WARNING: ${x.label}: ${x.unfinished} logical connections did not finish within ${s.maxMs} ms`);
}

// ---------------------------------------------------------------- connect latency

interface LatencySummary {
  case: LatencyCase;
  label: string;
  n: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  roundP50Us: number[];
  cpuUsPerOp: number;
}

function latencySummary(perRound: LatencyResult[]): LatencySummary[] {
  return LATENCY_CASES.map((c) => {
    const all = Float64Array.from(perRound.flatMap((r) => r.samples[c])).sort();
    const roundP50Us = perRound.map((r) => percentile(Float64Array.from(r.samples[c]).sort(), 50));
    return {
      case: c,
      label: LATENCY_LABELS[c],
      n: all.length,
      p50Us: percentile(all, 50),
      p99Us: percentile(all, 99),
      maxUs: all.length > 0 ? all[all.length - 1]! : NaN,
      roundP50Us,
      cpuUsPerOp: median(perRound.map((r) => r.cpuUsPerOp[c])),
    };
  });
}

// ---------------------------------------------------------------- shared session throughput

interface SharedCase {
  name: string;
  label: string;
  links: number;
}

interface SharedRun {
  case: string;
  round: number;
  client: SharedResult;
  /** Requests the server answered between the client's measure-start and measure-end (as near as IPC allows). */
  serverRequests: number;
  serverCpuUsPerReq: number;
}

// ---------------------------------------------------------------- main

function positive(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer, not ${v}`);
  return v;
}

export async function main(args: string[]): Promise<void> {
  const run = startRun("sessions", args);
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string", default: "3" },
      only: { type: "string" },
      apps: { type: "string", default: "8" },
      addresses: { type: "string", default: "3" },
      servers: { type: "string", default: "4" },
      requests: { type: "string", default: "200" },
      "payload-bytes": { type: "string", default: "64" },
      hits: { type: "string", default: "2000" },
      probes: { type: "string", default: "300" },
      "new-sessions": { type: "string", default: "300" },
      "warmup-ms": { type: "string", default: "1000" },
      "duration-ms": { type: "string", default: "3000" },
    },
  });
  const rounds = positive("rounds", Number(values.rounds));
  const only = values.only ? values.only.split(",") : [...SCENARIOS];
  for (const o of only) if (!(SCENARIOS as readonly string[]).includes(o)) throw new Error(`unknown scenario "${o}"; known: ${SCENARIOS.join(", ")}`);
  const want = (s: Scenario): boolean => only.includes(s);
  const payloadBytes = positive("payload-bytes", Number(values["payload-bytes"]));
  const fanout: FanoutSettings = {
    apps: positive("apps", Number(values.apps)),
    addresses: positive("addresses", Number(values.addresses)),
    servers: positive("servers", Number(values.servers)),
    requestsPerConnection: positive("requests", Number(values.requests)),
    payloadBytes,
    maxMs: 60_000,
    sampleEveryMs: 10,
  };
  if (fanout.addresses > ADDRESSES.length) throw new Error(`addresses: at most ${ADDRESSES.length}`);
  const totals: Record<LatencyCase, number> = {
    hit: positive("hits", Number(values.hits)),
    probe: positive("probes", Number(values.probes)),
    tcp: positive("new-sessions", Number(values["new-sessions"])),
    first: positive("new-sessions", Number(values["new-sessions"])),
    rtt: positive("hits", Number(values.hits)),
    raw: positive("hits", Number(values.hits)),
  };
  const shared = {
    concurrency: 64,
    payloadBytes,
    warmupMs: positive("warmup-ms", Number(values["warmup-ms"])),
    durationMs: positive("duration-ms", Number(values["duration-ms"])),
    maxRequests: 1_500_000,
  };

  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(" ");
  console.log(run.describe(`sessions: the client session table; ${rounds} interleaved rounds, medians`));
  console.log(`${machineLine(run.machine)}; load average at start ${load(run.loadBefore)}`);
  const results: Record<string, unknown> = { settings: { rounds, fanout, latencyTotals: totals, shared } };
  const report = run.report;
  /** Each scenario's part of the report, a blank line between them. */
  const section = (title: string): Report => (report.blocks.length > 0 ? report.line("", title) : report.line(title));

  // 1. fanout
  if (want("fanout")) {
    const lc = fanout.apps * fanout.addresses * fanout.servers;
    console.log(
      `\n[fanout] ${fanout.apps} applications × ${fanout.addresses} addresses (${ADDRESSES.slice(0, fanout.addresses).join(", ")}) × ` +
        `${fanout.servers} server processes = ${lc} logical connections, all at once, each ${fanout.requestsPerConnection} sequential ` +
        `${payloadBytes}-byte echo requests; client in its own process; sockets sampled every ${fanout.sampleEveryMs} ms from /proc; ` +
        `perilink servers with default limits`,
    );
    const runs: FanoutRun[] = [];
    for (let round = 1; round <= rounds; round++) {
      const order = FANOUT_CONTENDERS.map((_, i) => FANOUT_CONTENDERS[(i + round - 1) % FANOUT_CONTENDERS.length]!);
      for (const c of order) {
        const r = await fanoutOnce(c, round, fanout);
        runs.push(r);
        console.log(
          `  round ${round} ${c.padEnd(8)} sockets end ${r.client.socketsAtEnd} peak ${r.client.socketsPeak} distinct ${r.client.socketsDistinct}` +
            `  accepts ${r.serverAccepted}  RSS Δ ${num(r.rssDeltaKiB)} KiB  heap Δ ${num(r.heapDeltaKiB)} KiB  ${num(r.client.runMs)} ms`,
        );
      }
    }
    const summary = fanoutSummary(runs, FANOUT_CONTENDERS);
    section(`fanout: ${lc} logical connections (${fanout.apps} apps × ${fanout.addresses} addresses × ${fanout.servers} servers), medians of ${rounds} rounds`);
    fanoutReport(report, summary, runs, fanout);
    results.fanout = { medians: summary, runs };
  }

  // 2. connect latency
  if (want("connect")) {
    // Round r measures its share of each total; the shares add up to the total exactly.
    const countsFor = (round: number): Record<LatencyCase, number> => {
      const share = (t: number): number => Math.floor((t * round) / rounds) - Math.floor((t * (round - 1)) / rounds);
      return { hit: share(totals.hit), probe: share(totals.probe), tcp: share(totals.tcp), first: share(totals.first), rtt: share(totals.rtt), raw: share(totals.raw) };
    };
    const warmup: Record<LatencyCase, number> = { hit: 1000, probe: 30, tcp: 30, first: 30, rtt: 1000, raw: 1000 };
    const batch: Record<LatencyCase, number> = { hit: 20, probe: 3, tcp: 3, first: 3, rtt: 20, raw: 20 };
    const addrs = ADDRESSES.slice(0, Math.max(2, fanout.addresses));
    console.log(
      `\n[connect] client.connect() latency to one perilink server process (${addrs.join(", ")}); in all ` +
        LATENCY_CASES.map((c) => `${c} ${totals[c]}`).join(", ") +
        ` measured connects or requests over ${rounds} rounds, each round after ` +
        LATENCY_CASES.map((c) => `${warmup[c]}`).join("/") +
        ` unmeasured` +
        `; each link closed after its connect; a fresh client process per round; the cases take turns in batches of ` +
        LATENCY_CASES.map((c) => batch[c]).join("/") +
        ` (rotating order); ` +
        `server probe rate limit raised to ${CONNECT_PROBE_LIMITS.ratePerSecond}/s; ` +
        `references: echo requests on an open link and on a raw TCP RPC server (another process)`,
    );
    const servers = await startServers("perilink", 1, addrs, CONNECT_PROBE_LIMITS);
    const rawServers = await startServers("raw", 1, ["127.0.0.1"]).catch(async (err: unknown) => {
      await stopServers(servers);
      throw err;
    });
    const results2: LatencyResult[] = [];
    const probeCheck: { round: number; expected: number; answered: number; dropped: number }[] = [];
    try {
      for (let round = 1; round <= rounds; round++) {
        const order = LATENCY_CASES.map((_, i) => LATENCY_CASES[(i + round - 1) % LATENCY_CASES.length]!);
        const before = (await serverStats(servers))[0]!;
        const job: LatencyJob = {
          type: "latency",
          endpoints: servers[0]!.endpoints,
          rawEndpoint: rawServers[0]!.endpoints[0]!,
          counts: countsFor(round),
          warmup,
          batch,
          order,
          maxMs: 60_000,
        };
        const r = await runClient<LatencyResult>(job, 2 * 60_000 + 30_000);
        const after = (await serverStats(servers))[0]!;
        // Probes the round must cause: the probe client's anchor + every probe/first connect; hit and tcp clients one each.
        const expected = 1 + warmup.probe + r.samples.probe.length + warmup.first + r.samples.first.length + 2;
        probeCheck.push({ round, expected, answered: after.probes - before.probes, dropped: after.probesDropped - before.probesDropped });
        results2.push(r);
        const p50 = (c: LatencyCase): string => num(percentile(Float64Array.from(r.samples[c]).sort(), 50), 1);
        console.log(`  round ${round} [${order.join(",")}] p50 µs: ${LATENCY_CASES.map((c) => `${c} ${p50(c)}`).join("  ")}`);
      }
    } finally {
      await stopServers([...servers, ...rawServers]);
    }
    const summary = latencySummary(results2);
    const hit = summary.find((x) => x.case === "hit")!;
    const rtt = summary.find((x) => x.case === "rtt")!;
    const rawRtt = summary.find((x) => x.case === "raw")!;
    section(`connect latency: client.connect() until the Link is usable (the channel open is pipelined with the first request), all rounds pooled`)
      .table(
        ["case", "n", "p50 µs", "p99 µs", "max µs", "p50 per round µs", "client CPU µs/op"],
        summary.map((x) => [
          x.label,
          num(x.n),
          num(x.p50Us, 1),
          num(x.p99Us, 1),
          num(x.maxUs, 1),
          x.roundP50Us.map((v) => num(v, 1)).join(" / "),
          num(x.cpuUsPerOp, 1),
        ]),
      )
      .line(
        "",
        `cache hit p50 = ${num(hit.p50Us, 1)} µs  (target <= 50 µs: ${hit.p50Us <= 50 ? "met" : "NOT met"})`,
        `cache hit p50 vs one request on an open link: ${num(hit.p50Us / rtt.p50Us, 2)}×; vs one raw round trip: ${num(hit.p50Us / rawRtt.p50Us, 2)}×`,
        `UDP probes answered by the server per round: ${probeCheck.map((p) => `${p.answered}/${p.expected} expected${p.dropped ? `, ${p.dropped} dropped` : ""}`).join("; ")}`,
      );
    // Per-round figures, not every sample: the samples make the file large.
    const roundSummaries = results2.map((r, i) => ({
      round: i + 1,
      socketsAfter: r.socketsAfter,
      cpuUsPerOp: r.cpuUsPerOp,
      latencyUs: Object.fromEntries(
        LATENCY_CASES.map((c) => {
          const sorted = Float64Array.from(r.samples[c]).sort();
          return [c, { n: sorted.length, p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? NaN }];
        }),
      ),
    }));
    results.connect = { summary, probeCheck, totals, warmup, batch, rounds: roundSummaries };
  }

  // 3. shared session throughput
  if (want("shared")) {
    const cases: SharedCase[] = [
      { name: "8x8", label: "8 links × 8 in flight (one session)", links: 8 },
      { name: "1x64", label: "1 link × 64 in flight (one session)", links: 1 },
    ];
    console.log(
      `\n[shared] ${shared.concurrency} requests in flight, ${payloadBytes}-byte payloads, one perilink server process on 127.0.0.1; ` +
        `warm-up ${shared.warmupMs} ms, then ${shared.durationMs} ms; fresh processes per run`,
    );
    const runs: SharedRun[] = [];
    for (let round = 1; round <= rounds; round++) {
      const order = cases.map((_, i) => cases[(i + round - 1) % cases.length]!);
      for (const c of order) {
        const servers = await startServers("perilink", 1, ["127.0.0.1"]);
        try {
          const endpoint = servers[0]!.endpoints[0]!;
          const job: SharedJob = { type: "shared", endpoint, links: c.links, ...shared };
          const client = new Child(CLIENT_CHILD);
          let r: SharedResult;
          let atStart: ServerStatsMessage;
          let atEnd: ServerStatsMessage;
          try {
            client.send(job as unknown as { type: string });
            await client.next("measure-start", shared.warmupMs + 30_000);
            atStart = (await serverStats(servers))[0]!;
            await client.next("measure-end", shared.durationMs + 30_000);
            atEnd = (await serverStats(servers))[0]!;
            r = (await client.next("result", 30_000)) as unknown as SharedResult;
          } finally {
            await client.stop();
          }
          const serverRequests = atEnd.requests - atStart.requests;
          runs.push({ case: c.name, round, client: r, serverRequests, serverCpuUsPerReq: (atEnd.cpuUs - atStart.cpuUs) / serverRequests });
          console.log(
            `  round ${round} ${c.name.padEnd(5)} ${num(r.load.reqPerSec).padStart(9)} req/s  p50 ${num(r.load.p50Us)} µs  p99 ${num(r.load.p99Us)} µs` +
              `  sockets ${r.osSockets} (socketsInUse ${r.socketsInUse}, ${r.sessionRows} links, ${r.servers} server)`,
          );
        } finally {
          await stopServers(servers);
        }
      }
    }
    const summary = cases.map((c) => {
      const rs = runs.filter((r) => r.case === c.name);
      const of = (f: (r: SharedRun) => number): number => median(rs.map(f));
      return {
        case: c.name,
        label: c.label,
        reqPerSec: of((r) => r.client.load.reqPerSec),
        p50Us: of((r) => r.client.load.p50Us),
        p99Us: of((r) => r.client.load.p99Us),
        clientCpuUsPerReq: of((r) => r.client.cpuUs / r.client.load.requests),
        serverCpuUsPerReq: of((r) => r.serverCpuUsPerReq),
        clientMinorGcPer100k: of((r) => (r.client.gc.minor * 100_000) / r.client.load.requests),
        sockets: of((r) => r.client.osSockets),
      };
    });
    const base = summary.find((x) => x.case === "1x64");
    section(
      `shared session: ${shared.concurrency} in flight, ${payloadBytes}-byte payloads, ${shared.durationMs} ms after ${shared.warmupMs} ms warm-up, medians of ${rounds} rounds`,
    ).table(
      ["case", "req/s", "p50 µs", "p99 µs", "client CPU µs/req", "server CPU µs/req", "client minor GC/100k", "TCP sockets", "× 1x64"],
      summary.map((x) => [
        x.label,
        num(x.reqPerSec),
        num(x.p50Us),
        num(x.p99Us),
        num(x.clientCpuUsPerReq, 2),
        num(x.serverCpuUsPerReq, 2),
        num(x.clientMinorGcPer100k, 1),
        num(x.sockets),
        base ? num(x.reqPerSec / base.reqPerSec, 2) : "-",
      ]),
    );
    results.shared = { medians: summary, runs };
  }

  section(`load average (1/5/15 min): start ${load(run.loadBefore)}, end ${load(loadAverage())} (other processes on the host share its ${run.machine.cpus} CPUs)`);
  console.log("\n" + report.toString());
  const file = run.write(results);
  console.log(`\nresults: ${file}`);
}
