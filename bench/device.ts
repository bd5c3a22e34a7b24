/**
 * The device benchmark: `npm run bench -- device [--quick] [--no-arm]`.
 *
 * One row per target and architecture: the pi-zero-2w and node20 bundles on
 * x64 native, and the pi-zero-2w bundle on arm64 / armv7l under qemu
 * emulation when .ci/arm_setup.sh finds it set up (it is not asked to install
 * anything here). Each row runs the bundle on that architecture's Node.js,
 * with the target's heap budget in NODE_OPTIONS and its malloc tuning (one
 * start, as /usr/bin/perilink runs it), and compares with the same node doing less:
 *   - startup: `version`, and `serve` until it logs server_started, ÷ `node -e 0`
 *   - idle RSS of `serve` ÷ an idle `node -e setInterval(…)`
 *   - server RSS per idle session (sessions opened by a native client), and
 *     its anonymous part: opening them also pages in more of the node binary's
 *     code (file-backed, shared, once), which RSS counts too
 *   - echo throughput through `serve` ÷ the raw RPC echo server (bench/lib/raw_rpc.ts)
 *     on the same node, both driven by the same native client
 *   - native only: RSS 3 s and 10 s after 4,000 connect → 20 requests → close
 *     cycles, minus idle RSS (bench/lib/device_churn.ts)
 * Emulation is ~12–20× slower than native, so only ratios compare across rows.
 * Writes bench/results/device.json.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { promises as fs, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { build } from "esbuild";
import { ClientSession } from "../src/client/client_session.ts";
import { heapBudgetFlags, withNodeOptions, type HeapBudget } from "../src/runtime/heap_budget.ts";
import { mallocTuningEnv } from "../src/runtime/malloc_tuning.ts";
import { measureChurn, type ChurnResult } from "./lib/device_churn.ts";
import { runLoad } from "./lib/load.ts";
import { readRssKiB, sleep, stopProcess } from "./lib/proc.ts";
import { servedPort } from "./lib/served_port.ts";
import { machineLine, startRun } from "./lib/result_file.ts";
import { median } from "./lib/stats.ts";
import { num } from "./lib/table.ts";
import { RawRpcClient } from "./lib/raw_rpc.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const exec = promisify(execFile);
const TARGETS = ["pi-zero-2w", "node20"] as const;
type TargetName = (typeof TARGETS)[number];

interface Budget {
  memory: HeapBudget;
  nodeOptions: string;
  env: NodeJS.ProcessEnv;
}

/** The target's budget as /usr/bin/perilink applies it: V8 flags in NODE_OPTIONS, malloc tuning. */
async function budgetOf(target: TargetName): Promise<Budget> {
  const file = path.join(ROOT, "targets", `${target}.json`);
  const memory = (JSON.parse(await fs.readFile(file, "utf8")) as { memory: HeapBudget }).memory;
  const nodeOptions = withNodeOptions(undefined, heapBudgetFlags(memory, [], undefined));
  const env: NodeJS.ProcessEnv = { ...process.env, ...mallocTuningEnv(memory.mallocMmapThresholdBytes, {}), NODE_OPTIONS: nodeOptions };
  if (nodeOptions === "") delete env.NODE_OPTIONS;
  return { memory, nodeOptions, env };
}

interface Arch {
  target: TargetName;
  arch: string;
  node: string;
  env: NodeJS.ProcessEnv;
  emulated: boolean;
}

interface Row {
  target: TargetName;
  arch: string;
  node: string;
  emulated: boolean;
  bundleBytes: number;
  nodeStartMs: number;
  versionMs: number;
  serveMs: number;
  versionRatio: number;
  serveRatio: number;
  idleRssKiB: number;
  bareRssKiB: number;
  idleRssRatio: number;
  sessions: number;
  serverKiBPerSession: number;
  /** The anonymous (private) part of it: without the node binary's code pages the sessions' work first touched. */
  serverAnonKiBPerSession: number;
  reqPerSec: number;
  rawReqPerSec: number;
  throughputRatio: number;
  /** Native only: 4,000 connect → 20 requests → close cycles (emulated, it would take minutes). */
  churn: ChurnResult | null;
}

/** Anonymous (private, not file-backed) resident memory of a process, KiB, from /proc/<pid>/smaps_rollup. */
function readAnonKiB(pid: number): number {
  const m = /^Anonymous:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
  if (!m) throw new Error(`no Anonymous in smaps_rollup of pid ${pid}`);
  return Number(m[1]);
}

async function timeMs(fn: () => Promise<unknown>, runs: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    xs.push(performance.now() - t0);
  }
  return median(xs);
}

/** Starts `serve` and resolves once it accepts, with its port. */
async function startServe(a: Arch, bundle: string, stateDir: string, config: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(a.node, [bundle, "serve", "--access", "open", "--config", config, "--state-dir", stateDir, "--listen", "127.0.0.1:0", "--log-level", "info"], {
    env: a.env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  const port = await servedPort(child, `serve on ${a.arch}`, 120_000);
  return { child, port };
}

async function measure(a: Arch, bundle: string, rawEcho: string, quick: boolean): Promise<Row> {
  const runs = a.emulated || quick ? 3 : 7;
  const settleMs = a.emulated ? 4000 : 1500;
  const work = await fs.mkdtemp(path.join(os.tmpdir(), `perilink-bench-device-${a.arch}-`));
  const config = path.join(work, "config.json");
  await fs.writeFile(config, JSON.stringify({ limits: { maxSessions: 2000, maxSessionsPerPeer: 2000, sessionRatePerPeer: 0, sessionRateGlobal: 0 } }));
  const log = (what: string): void => console.error(`device ${a.target} ${a.arch}: ${what}`);
  try {
    const nodeStartMs = await timeMs(() => exec(a.node, ["-e", "0"], { env: a.env }), runs);
    const versionMs = await timeMs(() => exec(a.node, [bundle, "version"], { env: a.env }), runs);
    let n = 0;
    const serveMs = await timeMs(async () => {
      const { child } = await startServe(a, bundle, path.join(work, `s${n++}`), config);
      await stopProcess(child);
    }, runs);
    log(`node -e 0 ${num(nodeStartMs)} ms, version ${num(versionMs)} ms, serve ${num(serveMs)} ms`);

    const bare = spawn(a.node, ["-e", "setInterval(() => {}, 1000)"], { env: a.env, stdio: "ignore" });
    await sleep(settleMs);
    const bareRssKiB = readRssKiB(bare.pid!);
    await stopProcess(bare);

    const { child: server, port } = await startServe(a, bundle, path.join(work, "idle"), config);
    try {
      await sleep(settleMs);
      const idleRssKiB = readRssKiB(server.pid!);
      log(`idle rss ${num(idleRssKiB)} KiB, bare node ${num(bareRssKiB)} KiB`);

      // A first 50 sessions warm up what every session shares (pools, compiled code); the next N are measured.
      const sessions = a.emulated || quick ? 300 : 1000;
      const held: ClientSession[] = [];
      const open = async (count: number): Promise<void> => {
        for (let i = 0; i < count; i += 25) {
          held.push(...(await Promise.all(Array.from({ length: Math.min(25, count - i) }, () => ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 60_000 })))));
        }
      };
      await open(50);
      await sleep(settleMs);
      const warmKiB = readRssKiB(server.pid!);
      const warmAnonKiB = readAnonKiB(server.pid!);
      await open(sessions);
      await sleep(settleMs);
      const withSessionsKiB = readRssKiB(server.pid!);
      const serverAnonKiBPerSession = (readAnonKiB(server.pid!) - warmAnonKiB) / sessions;
      for (const s of held) s.destroy();
      const serverKiBPerSession = (withSessionsKiB - warmKiB) / sessions;
      log(`${sessions} idle sessions: ${num(serverKiBPerSession, 1)} KiB each, ${num(serverAnonKiBPerSession, 1)} KiB of it anonymous`);

      const load = { concurrency: 32, warmupMs: a.emulated ? 2000 : 500, durationMs: a.emulated || !quick ? 4000 : 2000, maxRequests: 2_000_000 };
      const payload = Buffer.alloc(64, 7);
      const session = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 60_000 });
      const channel = await session.openChannel("bench", "127.0.0.1", port);
      const ours = await runLoad(() => channel.request(payload, { timeoutMs: 60_000 }), load);
      await session.close();

      const raw = spawn(a.node, [rawEcho], { env: a.env, stdio: ["pipe", "pipe", "ignore"] });
      const rawPort = await new Promise<number>((resolve, reject) => {
        raw.stdout!.setEncoding("utf8").once("data", (s: string) => resolve(Number(s.trim())));
        raw.once("exit", (code) => reject(new Error(`raw echo server exited (${code})`)));
      });
      const client = await RawRpcClient.connect("127.0.0.1", rawPort);
      const base = await runLoad(() => client.request(payload), load);
      await client.close();
      raw.stdin!.end();
      await stopProcess(raw, 2000);
      log(`throughput ${num(ours.reqPerSec)} req/s, raw ${num(base.reqPerSec)} req/s`);

      return {
        target: a.target,
        arch: a.arch,
        node: (await exec(a.node, ["--version"], { env: a.env })).stdout.trim(),
        emulated: a.emulated,
        bundleBytes: (await fs.stat(bundle)).size,
        nodeStartMs,
        versionMs,
        serveMs,
        versionRatio: versionMs / nodeStartMs,
        serveRatio: serveMs / nodeStartMs,
        idleRssKiB,
        bareRssKiB,
        idleRssRatio: idleRssKiB / bareRssKiB,
        sessions,
        serverKiBPerSession,
        serverAnonKiBPerSession,
        reqPerSec: ours.reqPerSec,
        rawReqPerSec: base.reqPerSec,
        throughputRatio: ours.reqPerSec / base.reqPerSec,
        churn: a.emulated ? null : await measureChurn(a.node, bundle, a.env, quick ? 1000 : 4000),
      };
    } finally {
      await stopProcess(server);
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

async function armNodes(env: NodeJS.ProcessEnv): Promise<{ archs: Arch[]; note: string | null }> {
  const dir = process.env.PERILINK_ARM_DIR ?? path.join(os.homedir(), ".cache", "perilink-arm");
  try {
    const { stdout } = await exec(path.join(ROOT, ".ci", "arm_setup.sh"), [dir, "--no-install"]);
    const archs = stdout
      .trim()
      .split("\n")
      .map((l) => l.split(" "))
      .map(([arch, node, prefix]): Arch => ({ target: "pi-zero-2w", arch: arch!, node: node!, env: { ...env, QEMU_LD_PREFIX: prefix! }, emulated: true }));
    return { archs, note: null };
  } catch (err) {
    return { archs: [], note: ((err as { stderr?: string }).stderr ?? String(err)).trim() };
  }
}

export async function main(args: string[]): Promise<void> {
  const run = startRun("device", args);
  const quick = args.includes("--quick");
  console.log(
    run.describe(
      `device: the ${TARGETS.join(" and ")} bundles on ${os.arch()} (native)${args.includes("--no-arm") ? "" : ", and pi-zero-2w on arm64 / armv7l under qemu when set up"}, ` +
        `each with its target's memory budget; ${quick ? "--quick: 3 timing runs, 300 idle sessions, 2 s of load, 1,000 churn cycles" : "7 timing runs, 1,000 idle sessions, 4 s of load, 4,000 churn cycles"}`,
    ),
  );
  console.log(machineLine(run.machine));
  const work = await fs.mkdtemp(path.join(os.tmpdir(), "perilink-bench-device-"));
  try {
    const targetArgs = TARGETS.flatMap((t) => ["--target", t]);
    await exec(process.execPath, [path.join(ROOT, "node_modules", "tsx", "dist", "cli.mjs"), path.join(ROOT, "build", "build.ts"), "--quiet", ...targetArgs, "--outdir", work]);
    const budgets = { "pi-zero-2w": await budgetOf("pi-zero-2w"), node20: await budgetOf("node20") };
    const rawEcho = path.join(work, "raw_echo.mjs");
    await build({ entryPoints: [path.join(ROOT, "bench", "lib", "children", "raw_echo.ts")], outfile: rawEcho, bundle: true, platform: "node", format: "esm", target: "node20", logLevel: "warning" });

    const native = TARGETS.map((target): Arch => ({ target, arch: os.arch(), node: process.execPath, env: budgets[target].env, emulated: false }));
    const { archs, note } = args.includes("--no-arm") ? { archs: [], note: "--no-arm" } : await armNodes(budgets["pi-zero-2w"].env);
    if (note) console.error(`device: no emulated rows (${note})`);
    const rows: Row[] = [];
    for (const a of [...native, ...archs]) rows.push(await measure(a, path.join(work, a.target, "perilink.mjs"), rawEcho, quick));

    run.report.table(
      ["target", "arch", "node", "bundle KiB", "version ÷ node -e 0", "serve ÷ node -e 0", "idle RSS ÷ bare node", "KiB / idle session (anonymous)", "req/s ÷ raw RPC", "RSS after churn − idle, MiB: 3 s / 10 s"],
      rows.map((r) => [
        r.target,
        r.emulated ? `${r.arch} (qemu)` : `${r.arch} (native)`,
        r.node,
        num(r.bundleBytes / 1024, 1),
        num(r.versionRatio, 2),
        num(r.serveRatio, 2),
        num(r.idleRssRatio, 2),
        `${num(r.serverKiBPerSession, 1)} (${num(r.serverAnonKiBPerSession, 1)})`,
        num(r.throughputRatio, 2),
        r.churn ? `${num(r.churn.afterMinusIdleKiB / 1024, 1)} / ${num(r.churn.after10sMinusIdleKiB / 1024, 1)} (${num(r.churn.cycles)} cycles)` : "-",
      ]),
    );
    if (note) run.report.line(`no emulated rows: ${note}`);
    console.log(run.report.toString());
    const file = run.write({
      quick,
      budgets: Object.fromEntries(TARGETS.map((t) => [t, { nodeOptions: budgets[t].nodeOptions, memory: budgets[t].memory }])),
      emulationNote: note,
      rows,
    });
    console.log(`\nwrote ${path.relative(ROOT, file)}`);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}
