import { rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { OK, type LoadDone, type LoadMode, type StartLoad } from "./lib/children/handoff_load.ts";
import {
  BUNDLE,
  ensureFreshBundle,
  HTTP_APP,
  now,
  pm2Bin,
  runCommand,
  startNaive,
  startPerilink,
  startPm2,
  type Replacement,
  type Service,
  type UpgradeTrigger,
} from "./lib/handoff/services.ts";
import { Child, sleep } from "./lib/proc.ts";
import { machineLine, startRun, type Report } from "./lib/result_file.ts";
import { readLoadRecords, recordStats, type LoadRecords, type RecordStats } from "./lib/load_records.ts";
import { median } from "./lib/stats.ts";
import { num } from "./lib/table.ts";

/**
 * Replacing the serving process under load: perilink's `upgrade` against a
 * naive restart and `pm2 reload` in cluster mode, all serving the same
 * node:http app (lib/handoff/http_app.mjs; perilink in raw mode), each under
 * connection-per-request and keep-alive HTTP clients, plus perilink in
 * session mode with perilink clients. Per contender: a steady-state window,
 * then N replacements spaced out, every request's start, latency, outcome and
 * answering pid recorded by a separate load process. Reports failed requests,
 * p99 and max latency in the upgrade windows against steady state, how long
 * each replacement takes, and for perilink the latency by upgrade phase.
 *
 *   npm run bench -- handoff [--upgrades 5] [--clients 32] [--steady-ms 3000] [--gap-ms 1500]
 *     [--tail-ms 500] [--load close,keep-alive] [--pm2-instances 1] [--think-ms 0]
 *     [--trigger cli|control] [--only perilink,perilink-session,workers2,workers2-session,naive,pm2,…]
 *
 * `workers2…` is perilink with `--workers 2` (a manager and two service
 * processes, the whole group replaced at each upgrade). Every duration is
 * also given as a ratio to `node -e 0` measured in the same run.
 */

const LOAD_CHILD = fileURLToPath(new URL("./lib/children/handoff_load.ts", import.meta.url));
const MAX_REQUESTS = 4_000_000;

interface Settings {
  upgrades: number;
  clients: number;
  warmupMs: number;
  steadyMs: number;
  /** From a command's end to the next command's start. */
  gapMs: number;
  /** The upgrade window is from the command's start to its end plus this. */
  tailMs: number;
  pm2Instances: number;
  /** The HTTP loads each HTTP contender runs under, in order. */
  httpLoads: LoadMode[];
  /** Each client's pause after each answer; 0 for a closed loop at full speed. */
  thinkMs: number;
  trigger: UpgradeTrigger;
}

interface ContenderDef {
  name: string;
  label: string;
  load: LoadMode;
  /** Whether the project's targets apply (perilink). */
  perilink: boolean;
  start(port: number): Promise<Service>;
}

type LatencyStats = RecordStats;

interface UpgradeOutcome extends Replacement, LatencyStats {
  startedAt: number;
  endedAt: number;
  /** From the command's start to the first answer (ending after it) by a pid not seen answering before. */
  firstNewPidMs: number;
}

interface ContenderResult {
  contender: string;
  label: string;
  /** Whether the project's targets apply (perilink). */
  perilink: boolean;
  load: LoadMode;
  clients: number;
  upgrades: number;
  upgradesOk: number;
  requests: number;
  failed: number;
  non2xx: number;
  /** Failures by message (from the load process). */
  errors: Record<string, number>;
  /** The first 200 failed requests: start relative to the first command's start, latency, the upgrade whose window it overlaps (1-based; 0: none). */
  failures: { atMs: number; latencyMs: number; upgrade: number }[];
  steady: LatencyStats & { reqPerSec: number };
  window: LatencyStats;
  p99Ratio: number;
  cmdMsMedian: number;
  serverMsMedian: number;
  firstNewPidMsMedian: number;
  perUpgrade: UpgradeOutcome[];
  /** perilink: latency by phase of the upgrade, pooled over the upgrades (see `phaseStats`). */
  phases: Record<string, LatencyStats> | null;
  /** `node -e 0`, spawn to exit, while this contender's load runs (after the last window). */
  nodeStartUnderLoadMs: number;
  info: Record<string, unknown>;
  loadBounded: boolean;
}

interface Timeline {
  startedAt: number;
  adoptedAt: number;
  handedOverAt: number;
}

/** Time from `t0` to the first answer, ending at or after t0, by a pid that had not answered before t0. */
function firstNewPid(r: LoadRecords, t0: number): number {
  const before = new Set<number>();
  let first = Infinity;
  for (let i = 0; i < r.count; i++) {
    if (r.outcome[i] !== OK) continue;
    if (r.start[i]! + r.latency[i]! < t0) before.add(r.pid[i]!);
  }
  for (let i = 0; i < r.count; i++) {
    if (r.outcome[i] !== OK) continue;
    const end = r.start[i]! + r.latency[i]!;
    if (end >= t0 && end < first && !before.has(r.pid[i]!)) first = end;
  }
  return first - t0;
}

/**
 * perilink: the window cut at the instants of the servers' log (ms
 * resolution), requests by start time, pooled over the upgrades: `command`
 * (the upgrade command starting, up to the old process's "upgrade_started"),
 * `boot` (new process starting, up to its "listener_adopted"), `takeover` (up
 * to "upgrade_handed_over": the new process accepts), `after` (to the window's end).
 */
function phaseStats(r: LoadRecords, windows: { startedAt: number; endedAt: number }[], timelines: Timeline[], tailMs: number): Record<string, LatencyStats> | null {
  if (timelines.length !== windows.length) return null;
  const cuts = windows.map((w, i) => {
    const t = timelines[i]!;
    return { command: [w.startedAt, t.startedAt], boot: [t.startedAt, t.adoptedAt], takeover: [t.adoptedAt, t.handedOverAt], after: [t.handedOverAt, w.endedAt + tailMs] };
  });
  const out: Record<string, LatencyStats> = {};
  for (const phase of ["command", "boot", "takeover", "after"] as const) {
    out[phase] = recordStats(r, (start) => cuts.some((c) => start >= c[phase][0]! && start < c[phase][1]!));
  }
  return out;
}

/**
 * Stops `service` if this process is interrupted while it runs: later perilink
 * generations run in process groups of their own and pm2's daemon is detached,
 * so Ctrl-C alone would leave them running. Returns the remover.
 */
function stopOnSignal(service: Service): () => void {
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`\n${signal}: stopping the servers this benchmark started`);
    void service.stop().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  return () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
}

/** One contender: start it, load it, steady window, N replacements, stop. */
async function runContender(c: ContenderDef, s: Settings, port: number): Promise<ContenderResult> {
  const service = await c.start(port);
  const unhook = stopOnSignal(service);
  const file = path.join(os.tmpdir(), `perilink-bench-handoff-${process.pid}-${c.name}.bin`);
  const load = new Child(LOAD_CHILD);
  try {
    const maxMs = s.warmupMs + s.steadyMs + s.upgrades * (s.gapMs + 60_000) + 10_000;
    load.send({ type: "start", mode: c.load, port: service.port, clients: s.clients, maxMs, maxRequests: MAX_REQUESTS, thinkMs: s.thinkMs, file } satisfies StartLoad);
    await load.next("started", 30_000);
    await sleep(s.warmupMs);
    const steadyStart = now();
    await sleep(s.steadyMs);
    const steadyEnd = now();
    const done: { startedAt: number; endedAt: number; r: Replacement }[] = [];
    for (let i = 1; i <= s.upgrades; i++) {
      const startedAt = now();
      const r = await service.replace();
      const endedAt = now();
      done.push({ startedAt, endedAt, r });
      const server = r.serverMs === null ? "" : `, server ${num(r.serverMs)} ms`;
      console.log(`  ${c.name.padEnd(18)} #${i}  ${r.ok ? "ok" : `FAILED: ${r.error}`}  command ${num(r.cmdMs)} ms${server}`);
      await sleep(Math.max(s.tailMs, endedAt + s.gapMs - now()));
    }
    // How long a bare node process takes to start on this machine while this load runs.
    const nodeUnderLoad = await startTime(["-e", "0"], 5);
    load.send({ type: "stop" });
    const result = await load.next<LoadDone>("result", 30_000);
    const rec = readLoadRecords(result.file, result.count);

    const windows = done.map((d) => [d.startedAt, d.endedAt + s.tailMs] as const);
    const inWindow = (start: number, end: number): boolean => windows.some(([a, b]) => start < b && end >= a);
    const steady = recordStats(rec, (start, end) => start >= steadyStart && end <= steadyEnd);
    const window = recordStats(rec, inWindow);
    const all = recordStats(rec, () => true);
    const perUpgrade: UpgradeOutcome[] = done.map((d) => ({
      ...d.r,
      startedAt: d.startedAt,
      endedAt: d.endedAt,
      ...recordStats(rec, (start, end) => start < d.endedAt + s.tailMs && end >= d.startedAt),
      firstNewPidMs: firstNewPid(rec, d.startedAt),
    }));
    const ok = perUpgrade.filter((u) => u.ok);
    const failures: ContenderResult["failures"] = [];
    const origin = done[0]?.startedAt ?? steadyEnd;
    for (let i = 0; i < rec.count && failures.length < 200; i++) {
      if (rec.outcome[i] === OK) continue;
      const start = rec.start[i]!;
      const end = start + rec.latency[i]!;
      failures.push({ atMs: start - origin, latencyMs: rec.latency[i]!, upgrade: windows.findIndex(([a, b]) => start < b && end >= a) + 1 });
    }
    const info = service.info();
    const timelines = info.timelines as Timeline[] | undefined;
    return {
      contender: c.name,
      label: c.label,
      perilink: c.perilink,
      load: c.load,
      clients: s.clients,
      upgrades: s.upgrades,
      upgradesOk: ok.length,
      requests: all.requests,
      failed: all.failed,
      non2xx: all.non2xx,
      errors: result.errors,
      failures,
      steady: { ...steady, reqPerSec: (steady.requests * 1000) / (steadyEnd - steadyStart) },
      window,
      p99Ratio: window.p99Ms / steady.p99Ms,
      cmdMsMedian: median(ok.map((u) => u.cmdMs)),
      serverMsMedian: median(ok.flatMap((u) => (u.serverMs === null ? [] : [u.serverMs]))),
      firstNewPidMsMedian: median(ok.map((u) => u.firstNewPidMs)),
      perUpgrade,
      phases: timelines ? phaseStats(rec, done, timelines, s.tailMs) : null,
      nodeStartUnderLoadMs: nodeUnderLoad.medianMs,
      info,
      loadBounded: result.bounded,
    };
  } finally {
    await load.stop(5000);
    await service.stop();
    unhook();
    rmSync(file, { force: true });
  }
}

/** A free TCP port on 127.0.0.1 (for the contenders that need a fixed one). */
async function freePort(): Promise<number> {
  const net = await import("node:net");
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Wall time from spawn to exit of `node args`, median of `runs` (after one unmeasured run). */
async function startTime(args: string[], runs: number): Promise<{ medianMs: number; runsMs: number[] }> {
  const runsMs: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const r = await runCommand(process.execPath, args, { timeoutMs: 10_000 });
    if (r.code !== 0) throw new Error(`node ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    if (i > 0) runsMs.push(r.ms);
  }
  return { medianMs: median(runsMs), runsMs };
}

const HTTP_LOADS: Record<string, { mode: LoadMode; suffix: string; label: string }> = {
  close: { mode: "http-close", suffix: "close", label: "HTTP, connection per request" },
  "keep-alive": { mode: "http-keepalive", suffix: "keepalive", label: "HTTP keep-alive" },
};

/** Every contender: each HTTP one once per HTTP load (`perilink-close`, `perilink-keepalive`, …), then perilink session mode. */
function contenders(s: Settings, bundle: string): ContenderDef[] {
  const how = s.trigger === "cli" ? "perilink upgrade" : "perilink upgrade over the control socket";
  const loads = s.httpLoads.map((mode) => Object.values(HTTP_LOADS).find((l) => l.mode === mode)!);
  const http = (base: string, label: string, perilink: boolean, start: ContenderDef["start"]): ContenderDef[] =>
    loads.map((l) => ({ name: `${base}-${l.suffix}`, label: `${label} (${l.label})`, load: l.mode, perilink, start }));
  return [
    ...http("perilink", `${how}, raw mode`, true, () => startPerilink(bundle, HTTP_APP, s.trigger)),
    {
      name: "perilink-session",
      label: `${how}, session mode (perilink links)`,
      load: "perilink",
      perilink: true,
      start: () => startPerilink(bundle, null, s.trigger),
    },
    ...http("workers2", `${how}, --workers 2, raw mode`, true, () => startPerilink(bundle, HTTP_APP, s.trigger, 2)),
    {
      name: "workers2-session",
      label: `${how}, --workers 2, session mode (perilink links)`,
      load: "perilink",
      perilink: true,
      start: () => startPerilink(bundle, null, s.trigger, 2),
    },
    ...http("naive", "naive restart: SIGTERM, start", false, (port) => startNaive(port)),
    ...http("pm2", `pm2 reload, cluster x${s.pm2Instances}`, false, (port) => startPm2(port, s.pm2Instances)),
  ];
}

const verdict = (ok: boolean): string => (ok ? "met" : "NOT met");

function report(out: Report, results: ContenderResult[], nodeStartMs: number, bundleStartMs: number, s: Settings): void {
  out.table(
    ["contender", "upgrades", "requests", "failed", "steady p99 ms", "window p99 ms", "window/steady", "window max ms", "command ms", "÷ node -e 0", "server ms", "÷ node -e 0", "1st new-pid answer ms"],
    results.map((r) => [
      r.label,
      r.upgradesOk === r.upgrades ? String(r.upgrades) : `${r.upgradesOk}/${r.upgrades}`,
      num(r.requests),
      num(r.failed + r.non2xx),
      num(r.steady.p99Ms, 1),
      num(r.window.p99Ms, 1),
      num(r.p99Ratio, 2),
      num(r.window.maxMs, 1),
      num(r.cmdMsMedian),
      num(r.cmdMsMedian / nodeStartMs, 2),
      num(r.serverMsMedian),
      num(r.serverMsMedian / nodeStartMs, 2),
      num(r.firstNewPidMsMedian),
    ]),
  );
  out.line("");
  out.table(
    ["contender", "steady req/s", "steady p50 ms", "window p50 ms", "node -e 0 under load ms", "command ÷ that", "server ÷ that", "failed in windows", "failures"],
    results.map((r) => [
      r.label,
      num(r.steady.reqPerSec),
      num(r.steady.p50Ms, 2),
      num(r.window.p50Ms, 2),
      num(r.nodeStartUnderLoadMs),
      num(r.cmdMsMedian / r.nodeStartUnderLoadMs, 2),
      num(r.serverMsMedian / r.nodeStartUnderLoadMs, 2),
      num(r.window.failed + r.window.non2xx),
      Object.entries(r.errors)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 2)
        .map(([m, n]) => `${n}× ${m.slice(0, 60)}`)
        .join("; ") || "-",
    ]),
  );
  for (const r of results) {
    if (r.loadBounded) out.line(`WARNING: ${r.contender}: the load stopped at its bound (${num(MAX_REQUESTS)} requests or its time limit) before the run ended`);
  }
  out.line("");
  out.line(
    `bare node start (node -e 0, spawn to exit): median ${num(nodeStartMs, 1)} ms; node ${path.relative(process.cwd(), BUNDLE)} version: median ${num(bundleStartMs, 1)} ms ` +
      `(${num(bundleStartMs / nodeStartMs, 2)}x); "÷ node -e 0" columns divide by the idle median of this run`,
  );
  const phased = results.filter((r) => r.phases !== null);
  if (phased.length > 0) {
    out.line("");
    out.table(
      ["perilink upgrade phase", "median ms", "÷ node -e 0", "requests", "failed", "p50 ms", "p99 ms", "max ms"],
      phased.flatMap((r) => {
        const tl = (r.info.timelines as Record<string, number>[] | undefined) ?? [];
        const ms: Record<string, number> = {
          command: median(tl.map((t, i) => t.startedAt! - r.perUpgrade[i]!.startedAt)),
          boot: median(tl.map((t) => t.bootMs!)),
          takeover: median(tl.map((t) => t.takeoverMs!)),
          after: NaN,
        };
        return Object.entries(r.phases!).map(([phase, st]) => [
          `${r.contender}: ${phase}`,
          num(ms[phase] ?? NaN),
          num((ms[phase] ?? NaN) / nodeStartMs, 2),
          num(st.requests),
          num(st.failed + st.non2xx),
          num(st.p50Ms, 2),
          num(st.p99Ms, 1),
          num(st.maxMs, 1),
        ]);
      }),
    );
    out.line(
      `phases: command = ${s.trigger === "cli" ? "`perilink upgrade` starting" : "the control request"} until the server logs upgrade_started; boot = new process until it has adopted the sockets; ` +
        "takeover = until it accepts (upgrade_handed_over); after = to the window's end. Requests by start time.",
    );
  }
  const p = results.filter((r) => r.perilink);
  if (p.length > 0) {
    out.line("");
    out.line("targets (perilink):");
    const failed = p.map((r) => `${r.contender} ${num(r.failed + r.non2xx)}`).join(", ");
    out.line(`  0 failed requests in every perilink run: ${failed} -> ${verdict(p.every((r) => r.failed + r.non2xx === 0 && r.upgradesOk === r.upgrades))}`);
    for (const r of p) {
      out.line(
        `  ${r.contender}: window p99 <= 2x steady p99: ${num(r.window.p99Ms, 1)} ms vs 2 x ${num(r.steady.p99Ms, 1)} = ${num(2 * r.steady.p99Ms, 1)} ms ` +
          `(${num(r.p99Ratio, 2)}x) -> ${verdict(r.p99Ratio <= 2)}`,
      );
    }
    for (const r of p) {
      const server = r.serverMsMedian / nodeStartMs;
      const command = r.cmdMsMedian / nodeStartMs;
      const serverLoaded = r.serverMsMedian / r.nodeStartUnderLoadMs;
      const commandLoaded = r.cmdMsMedian / r.nodeStartUnderLoadMs;
      out.line(
        `  ${r.contender}: server-measured upgrade <= 2x and ${s.trigger === "cli" ? "`perilink upgrade` command" : "control request"} <= 3x a bare node start: ` +
          `server median ${num(r.serverMsMedian)} ms, command median ${num(r.cmdMsMedian)} ms; ` +
          `vs idle node -e 0 ${num(nodeStartMs)} ms: ${num(server, 2)}x -> ${verdict(server <= 2)}, ${num(command, 2)}x -> ${verdict(command <= 3)}; ` +
          `vs node -e 0 under the same load ${num(r.nodeStartUnderLoadMs)} ms: ${num(serverLoaded, 2)}x -> ${verdict(serverLoaded <= 2)}, ${num(commandLoaded, 2)}x -> ${verdict(commandLoaded <= 3)}`,
      );
    }
  }
  out.line("");
  out.line(
    `window = from the command's start to its end + ${s.tailMs} ms; a request belongs to it when its [start, end] overlaps it. ` +
      `Latency percentiles are over answered requests; failed = errors (refused, reset, timeout) + non-2xx.`,
  );
}

export async function main(args: string[]): Promise<void> {
  const run = startRun("handoff", args);
  const { values } = parseArgs({
    args,
    options: {
      upgrades: { type: "string", default: "5" },
      clients: { type: "string", default: "32" },
      "warmup-ms": { type: "string", default: "500" },
      "steady-ms": { type: "string", default: "3000" },
      "gap-ms": { type: "string", default: "1500" },
      "tail-ms": { type: "string", default: "500" },
      "pm2-instances": { type: "string", default: "1" },
      load: { type: "string", default: "close,keep-alive" },
      "think-ms": { type: "string", default: "0" },
      trigger: { type: "string", default: "cli" },
      only: { type: "string" },
    },
  });
  const s: Settings = {
    upgrades: Number(values.upgrades),
    clients: Number(values.clients),
    warmupMs: Number(values["warmup-ms"]),
    steadyMs: Number(values["steady-ms"]),
    gapMs: Number(values["gap-ms"]),
    tailMs: Number(values["tail-ms"]),
    pm2Instances: Number(values["pm2-instances"]),
    httpLoads: values.load.split(",").map((l) => {
      const known = HTTP_LOADS[l];
      if (!known) throw new Error(`--load takes close and/or keep-alive, not ${l}`);
      return known.mode;
    }),
    thinkMs: Number(values["think-ms"]),
    trigger: values.trigger as UpgradeTrigger,
  };
  if (s.trigger !== "cli" && s.trigger !== "control") throw new Error(`--trigger is cli (perilink upgrade) or control (the control socket, from this process), not ${s.trigger}`);
  for (const [k, v] of Object.entries(s)) {
    if (typeof v === "number" && (!Number.isInteger(v) || v < (k === "thinkMs" ? 0 : 1))) throw new Error(`${k} must be a positive integer, not ${v}`);
  }
  if (s.upgrades > 50 || s.clients > 512 || s.steadyMs > 60_000) throw new Error("upgrades <= 50, clients <= 512, steady-ms <= 60000");
  if (s.gapMs < s.tailMs) throw new Error("gap-ms must be at least tail-ms, so that upgrade windows do not overlap");

  const bundle = ensureFreshBundle();
  let defs = contenders(s, bundle);
  if (values.only) {
    // A name picks that contender; a base name (perilink, naive, pm2) picks it under every HTTP load.
    const want = values.only.split(",");
    const picks = (d: ContenderDef, w: string): boolean => d.name === w || (d.load !== "perilink" && d.name.startsWith(`${w}-`));
    const unknown = want.filter((w) => !defs.some((d) => picks(d, w)));
    if (unknown.length > 0) throw new Error(`unknown contender(s) ${unknown.join(", ")}; known: ${defs.map((d) => d.name).join(", ")}`);
    defs = defs.filter((d) => want.some((w) => picks(d, w)));
  }
  if (!pm2Bin() && defs.some((d) => d.name.startsWith("pm2"))) {
    console.log("pm2 is not installed (npm ci installs it): skipping the pm2 contenders");
    defs = defs.filter((d) => !d.name.startsWith("pm2"));
  }

  const http = s.httpLoads
    .map((l) => (l === "http-close" ? "connection-per-request (Connection: close, agent: false)" : "keep-alive (one connection per client)"))
    .join(" / ");
  console.log(
    run.describe(
      `handoff: ${s.clients} HTTP/1.1 clients, ${http}; session mode: ${s.clients} links of one perilink client; 127.0.0.1, load in its own process; ` +
      `upgrades by ${s.trigger === "cli" ? "`perilink upgrade`" : "requests over the control socket from this process"}; ` +
      `${s.thinkMs > 0 ? `each client pausing ${s.thinkMs} ms after each answer; ` : "closed loop, no pause; "}` +
      `${s.warmupMs} ms warm-up, ${s.steadyMs} ms steady state, then ${s.upgrades} replacements ${s.gapMs} ms apart (window = command + ${s.tailMs} ms)`,
    ),
  );
  console.log(`${machineLine(run.machine)}, load average ${run.loadBefore.map((x) => x.toFixed(2)).join(" ")}\n`);

  const nodeStart = await startTime(["-e", "0"], 10);
  const bundleStart = await startTime([bundle, "version"], 10);
  console.log(`  node -e 0: median ${num(nodeStart.medianMs, 1)} ms; perilink version: median ${num(bundleStart.medianMs, 1)} ms`);

  const results: ContenderResult[] = [];
  for (const def of defs) {
    const port = await freePort();
    results.push(await runContender(def, s, port));
  }

  report(run.report, results, nodeStart.medianMs, bundleStart.medianMs, s);
  console.log("\n" + run.report.toString());
  const file = run.write({
    settings: { ...s, maxRequests: MAX_REQUESTS },
    nodeStartMs: nodeStart,
    bundleStartMs: bundleStart,
    targets: {
      failedRequests: 0,
      windowP99OverSteadyP99: 2,
      serverUpgradeOverNodeStart: 2,
      commandUpgradeOverNodeStart: 3,
    },
    contenders: results,
  });
  console.log(`\nresults: ${file}`);
}
