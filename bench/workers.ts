import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { AcceptSemaphore } from "../src/handoff/accept_semaphore.ts";
import { freePort } from "../test/helpers/free_port.ts";
import type { LoadDone, StartLoad } from "./lib/children/handoff_load.ts";
import { ensureFreshBundle, HTTP_APP } from "./lib/handoff/services.ts";
import { readLoadRecords, OUTCOME_OK } from "./lib/load_records.ts";
import { Child, procTable, sleep, stopProcess } from "./lib/proc.ts";
import { machineLine, startRun } from "./lib/result_file.ts";
import { median, percentile } from "./lib/stats.ts";
import { num } from "./lib/table.ts";
import { upgradeMemoryOnce, type UpgradeMemoryRow } from "./lib/workers/group_upgrade_memory.ts";

/**
 * Service processes (S5): the same node:http app (lib/handoff/http_app.mjs)
 * served by `perilink serve --workers N` in both dispatch modes and by
 * node:cluster round-robin, under connection-per-request HTTP clients (the
 * load where dispatch happens for every request). Per row: req/s, p50 and
 * p99 latency, CPU of the whole process tree per request, and balance (the
 * busiest process's share of the requests against an even share).
 * Also: what one take-and-release of the flock accept semaphore costs, and
 * (part `upgrade`) the process tree's peak memory through a `--workers 4`
 * group upgrade, the whole new group at once against a rolling one
 * (`limits.upgradeSurge` 4 and 1), side by side.
 *
 *   npm run bench -- workers [--clients 32] [--warmup-ms 2000] [--window-ms 8000] [--rounds 1] [--workers 1,2,4] [--part dispatch|upgrade|all]
 */

const LOAD_CHILD = fileURLToPath(new URL("./lib/children/handoff_load.ts", import.meta.url));
const CLUSTER_SERVER = fileURLToPath(new URL("./lib/workers/cluster_server.mjs", import.meta.url));
const MAX_REQUESTS = 4_000_000;

interface Row {
  contender: string;
  dispatch: string;
  workers: number;
  round: number;
  loadavg: number;
  requests: number;
  failed: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerReq: number;
  /** The busiest serving process's share of the requests ÷ an even share (1 = perfect balance). */
  busiestVsEven: number;
  byPid: Record<string, number>;
}

/** user+system CPU of `root` and every descendant, in µs (Linux /proc). */
function treeCpuUs(root: number): number {
  const table = procTable();
  let total = 0;
  for (const [pid, row] of table) {
    for (let p: number | undefined = pid; p !== undefined && p > 1; p = table.get(p)?.ppid) {
      if (p === root) {
        total += row.cpuUs;
        break;
      }
    }
  }
  return total;
}

async function waitOutput(child: ChildProcess, stream: "stdout" | "stderr", re: RegExp, what: string): Promise<void> {
  let text = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: not ready in 30 s: ${text.slice(-2000)}`)), 30_000);
    child[stream]!.setEncoding("utf8").on("data", (s: string) => {
      text = (text + s).slice(-20_000);
      if (re.test(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}: ${text.slice(-2000)}`));
    });
  });
}

async function startServer(contender: string, dispatch: string, workers: number, port: number): Promise<{ pid: number; stop: () => Promise<void> }> {
  if (contender === "cluster") {
    const child = spawn(process.execPath, [CLUSTER_SERVER], { env: { ...process.env, PORT: String(port), WORKERS: String(workers) }, stdio: ["ignore", "pipe", "inherit"] });
    await waitOutput(child, "stdout", /listening \d+/, "node:cluster");
    return { pid: child.pid!, stop: () => stopProcess(child, 3000) };
  }
  const stateDir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-workers-"));
  const args = [ensureFreshBundle(), "serve", "--access", "open", "--listen", `127.0.0.1:${port}`, "--state-dir", stateDir, "--app", HTTP_APP, "--log-level", "warn", "--workers", String(workers)];
  if (workers > 1) args.push("--dispatch", dispatch);
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
  let errText = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (errText = (errText + s).slice(-4000)));
  // Ready once the port answers.
  const end = Date.now() + 30_000;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        r(true);
      });
      s.on("error", () => r(false));
    });
    if (ok) break;
    if (child.exitCode !== null || Date.now() > end) throw new Error(`perilink serve did not start: ${errText}`);
    await sleep(50);
  }
  return {
    pid: child.pid!,
    stop: async () => {
      await stopProcess(child, 5000);
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

async function runOnce(contender: string, dispatch: string, workers: number, round: number, s: { clients: number; warmupMs: number; windowMs: number }): Promise<Row> {
  const loadavg = os.loadavg()[0]!;
  const port = await freePort();
  const server = await startServer(contender, dispatch, workers, port);
  const file = path.join(os.tmpdir(), `perilink-bench-workers-${process.pid}-${contender}-${workers}.bin`);
  const load = new Child(LOAD_CHILD);
  try {
    load.send({ type: "start", mode: "http-close", port, clients: s.clients, maxMs: s.warmupMs + s.windowMs + 30_000, maxRequests: MAX_REQUESTS, thinkMs: 0, file } satisfies StartLoad);
    await load.next("started", 20_000);
    await sleep(s.warmupMs);
    const t0 = performance.timeOrigin + performance.now();
    const cpu0 = treeCpuUs(server.pid);
    await sleep(s.windowMs);
    const cpu1 = treeCpuUs(server.pid);
    const t1 = performance.timeOrigin + performance.now();
    load.send({ type: "stop" });
    const done = await load.next<LoadDone>("result", 30_000);
    const r = readLoadRecords(done.file, done.count);
    const lat: number[] = [];
    const byPid = new Map<number, number>();
    let failed = 0;
    for (let i = 0; i < r.count; i++) {
      const st = r.start[i]!;
      if (st < t0 || st >= t1) continue;
      if (r.outcome[i] !== OUTCOME_OK) {
        failed++;
        continue;
      }
      lat.push(r.latency[i]!);
      byPid.set(r.pid[i]!, (byPid.get(r.pid[i]!) ?? 0) + 1);
    }
    rmSync(done.file, { force: true });
    const sorted = Float64Array.from(lat).sort();
    const busiest = Math.max(...byPid.values());
    return {
      contender,
      dispatch,
      workers,
      round,
      loadavg,
      requests: lat.length,
      failed,
      reqPerSec: lat.length / ((t1 - t0) / 1000),
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      cpuUsPerReq: lat.length > 0 ? (cpu1 - cpu0) / lat.length : NaN,
      busiestVsEven: lat.length > 0 ? (busiest / lat.length) * workers : NaN,
      byPid: Object.fromEntries(byPid),
    };
  } finally {
    await load.stop(1000);
    await server.stop();
  }
}

/** What one take-and-release of the flock accept semaphore costs (it starts the flock command each time). */
async function flockCostUs(n = 20): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-flock-"));
  const sem = AcceptSemaphore.forStateDir(dir);
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await sem.acquire(1000);
    sem.release();
    times.push((performance.now() - t) * 1000);
  }
  rmSync(dir, { recursive: true, force: true });
  return median(times);
}

export async function main(argv: string[]): Promise<void> {
  const run = startRun("workers", argv);
  const { values } = parseArgs({
    args: argv,
    options: {
      clients: { type: "string", default: "32" },
      "warmup-ms": { type: "string", default: "2000" },
      "window-ms": { type: "string", default: "8000" },
      rounds: { type: "string", default: "1" },
      workers: { type: "string", default: "1,2,4" },
      part: { type: "string", default: "all" },
    },
  });
  const part = String(values.part);
  if (!["dispatch", "upgrade", "all"].includes(part)) throw new Error(`--part must be dispatch, upgrade or all, not ${part}`);
  const s = { clients: Number(values.clients), warmupMs: Number(values["warmup-ms"]), windowMs: Number(values["window-ms"]) };
  const counts = String(values.workers).split(",").map(Number);
  const plan: [string, string, number][] = [];
  for (const n of part === "upgrade" ? [] : counts) {
    if (n === 1) plan.push(["perilink", "single", 1]);
    else plan.push(["perilink", "manager", n], ["perilink", "semaphore", n]);
    plan.push(["cluster", "round-robin", n]);
  }
  console.log(
    run.describe(
      `workers: the handoff benchmark's node:http app served by perilink serve --workers N (manager and semaphore dispatch) and node:cluster round-robin, ` +
        `N = ${counts.join(", ")}; ${s.clients} connection-per-request HTTP clients, ${s.warmupMs} ms warm-up, ${s.windowMs} ms window; ` +
        `then the process tree's memory through a --workers 4 group upgrade with upgradeSurge 4 and 1 (16 clients); parts: ${part}; ${values.rounds} round(s), medians`,
    ),
  );
  console.log(machineLine(run.machine));
  const rows: Row[] = [];
  for (let round = 1; round <= Number(values.rounds); round++) {
    for (const [contender, dispatch, n] of plan) {
      process.stderr.write(`workers: ${contender} ${dispatch} ×${n}, round ${round}…\n`);
      rows.push(await runOnce(contender, dispatch, n, round, s));
    }
  }
  const upgrades: UpgradeMemoryRow[] = [];
  for (let round = 1; part !== "dispatch" && round <= Number(values.rounds); round++) {
    for (const surge of [4, 1]) {
      process.stderr.write(`workers: group upgrade --workers 4, upgradeSurge ${surge}, round ${round}…\n`);
      upgrades.push(await upgradeMemoryOnce(surge, 4, round, LOAD_CHILD, Math.min(s.clients, 16)));
    }
  }
  const flockUs = await flockCostUs();
  const summary = plan.map(([contender, dispatch, n]) => {
    const mine = rows.filter((r) => r.contender === contender && r.dispatch === dispatch && r.workers === n);
    return {
      contender,
      dispatch,
      workers: n,
      reqPerSec: median(mine.map((r) => r.reqPerSec)),
      p50Ms: median(mine.map((r) => r.p50Ms)),
      p99Ms: median(mine.map((r) => r.p99Ms)),
      cpuUsPerReq: median(mine.map((r) => r.cpuUsPerReq)),
      busiestVsEven: median(mine.map((r) => r.busiestVsEven)),
      failed: mine.reduce((a, r) => a + r.failed, 0),
    };
  });
  if (summary.length > 0) run.report.table(
    ["server", "dispatch", "workers", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "busiest/even", "failed"],
    summary.map((x) => [
      x.contender === "cluster" ? "node:cluster" : "perilink",
      x.dispatch,
      String(x.workers),
      num(x.reqPerSec),
      num(x.p50Ms, 2),
      num(x.p99Ms, 2),
      num(x.cpuUsPerReq),
      num(x.busiestVsEven, 2),
      String(x.failed),
    ]),
  );
  const bySurge = [4, 1].map((surge) => {
    const mine = upgrades.filter((u) => u.surge === surge);
    return {
      surge,
      beforeMiB: median(mine.map((u) => u.beforeMiB)),
      peakMiB: median(mine.map((u) => u.peakMiB)),
      peakProcesses: Math.max(...mine.map((u) => u.peakProcesses)),
      handoverMs: median(mine.map((u) => u.handoverMs)),
      wholeMs: median(mine.map((u) => u.wholeMs)),
      failed: mine.reduce((a, u) => a + u.failed, 0),
      requests: mine.reduce((a, u) => a + u.requests, 0),
    };
  });
  if (upgrades.length > 0) {
    const whole = bySurge[0]!;
    const rolling = bySurge[1]!;
    run.report.line("", "Group upgrade of --workers 4 under load: the process tree's RSS (sum of VmRSS, every 20 ms)");
    run.report.table(
      ["upgradeSurge", "tree RSS before MiB", "peak MiB", "peak ÷ before", "most processes in the tree", "handover ms", "group whole ms", "requests", "failed"],
      bySurge.map((x) => [
        x.surge === 1 ? "1 (rolling)" : `${x.surge} (whole group)`,
        num(x.beforeMiB, 1),
        num(x.peakMiB, 1),
        num(x.peakMiB / x.beforeMiB, 2),
        String(x.peakProcesses),
        num(x.handoverMs),
        num(x.wholeMs),
        String(x.requests),
        String(x.failed),
      ]),
    );
    run.report.line(`rolling ÷ whole group, peak tree RSS: ${num(rolling.peakMiB / whole.peakMiB, 2)}× (medians of ${values.rounds} round(s))`);
  }
  run.report.line(
    "",
    `flock accept semaphore (util-linux flock command): ${num(flockUs)} µs per take-and-release (median of 20)`,
    rows.length === 0 ? "" : `load: ${s.clients} connection-per-request HTTP clients, ${s.warmupMs} ms warm-up, ${s.windowMs} ms window; 1-min load average at the starts: ${rows.map((r) => r.loadavg.toFixed(1)).join(", ")}`,
  );
  console.log(run.report.toString());
  const file = run.write({ settings: s, flockUsPerTakeAndRelease: flockUs, summary, rows, groupUpgrade: { summary: bySurge, rows: upgrades } });
  console.log(`\nresults: ${file}`);
}
