import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import { test, type TestContext } from "node:test";
import { promisify } from "node:util";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { EventEmitter } from "node:events";
import type { ChildProcess, SpawnOptions } from "node:child_process";
import { heapBudgetFlags, hasOldSpaceFlag, withNodeOptions } from "../../src/runtime/heap_budget.ts";
import { HEAP_BUDGET_ENV, reexecWithHeapBudget } from "../../src/runtime/heap_reexec.ts";
import { stopChild } from "../helpers/cli.ts";
import { tempDir, waitFor } from "../helpers/fixtures.ts";
import { bundleFor, heapLimitWith, nodeBin } from "./bundles.ts";

const run = promisify(execFile);
const MiB = 1048576;
/** The pi-zero-2w target's budget (targets/pi-zero-2w.json memory). */
const PI_FLAGS = ["--max-old-space-size=96", "--max-semi-space-size=1"];

/** Environment without any heap flag of the test runner's own. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  if (!("NODE_OPTIONS" in extra)) delete env.NODE_OPTIONS;
  if (!("MALLOC_MMAP_THRESHOLD_" in extra)) delete env.MALLOC_MMAP_THRESHOLD_;
  return env;
}

interface Served {
  /** The process the test started: a stand-in when serve started itself again with the budget. */
  pid: number;
  stateDir: string;
  bundle: string;
  stderr: () => string;
  exited: Promise<number | null>;
  stop: () => Promise<void>;
}

/** `node FLAGS <bundle of target> serve` on a loopback port; stopped after the test. */
async function serveBundle(t: TestContext, target: string, flags: string[] | "as-executable" = [], env: NodeJS.ProcessEnv = cleanEnv()): Promise<Served> {
  const bundle = await bundleFor(target);
  const stateDir = tempDir();
  const args = ["serve", "--access", "open", "--state-dir", stateDir, "--listen", "127.0.0.1:0"];
  const [cmd, argv] = flags === "as-executable" ? [bundle, args] : [nodeBin(), [...flags, bundle, ...args]];
  const child = spawn(cmd, argv, { env, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  t.after(() => stopChild(child));
  await waitFor(() => err.includes('"server_started"') || child.exitCode !== null, "the server to start", 30000);
  assert.equal(child.exitCode, null, `serve exited early: ${err}`);
  return { pid: child.pid!, stateDir, bundle, stderr: () => err, exited, stop: () => stopChild(child) };
}

async function status(s: Served): Promise<{ pid: number; generation: number; memory: { rssBytes: number; heapUsedBytes: number; heapLimitBytes: number } }> {
  const { stdout } = await run(nodeBin(), [s.bundle, "status", "--state-dir", s.stateDir, "--json"], { env: cleanEnv() });
  return JSON.parse(stdout);
}

test("heapBudgetFlags: the budget as flags, none for 0 or when the user chose an old-space limit; a user's semi-space size is kept; bad budgets are a RangeError", () => {
  const pi = { maxOldSpaceMiB: 96, maxSemiSpaceMiB: 1 };
  assert.deepEqual(heapBudgetFlags(pi, [], undefined), ["--max-old-space-size=96", "--max-semi-space-size=1"]);
  assert.deepEqual(heapBudgetFlags({ maxOldSpaceMiB: 96 }, [], undefined), ["--max-old-space-size=96"]);
  assert.deepEqual(heapBudgetFlags({ maxOldSpaceMiB: 0, maxSemiSpaceMiB: 1 }, [], undefined), []);
  assert.deepEqual(heapBudgetFlags(pi, ["--max-old-space-size=200"], undefined), []);
  assert.deepEqual(heapBudgetFlags(pi, ["--max_old_space_size=200"], undefined), []);
  assert.deepEqual(heapBudgetFlags(pi, [], "--enable-source-maps --max-old-space-size=200"), []);
  assert.deepEqual(heapBudgetFlags(pi, ["--max-semi-space-size=2"], undefined), ["--max-old-space-size=96"]);
  assert.deepEqual(heapBudgetFlags(pi, [], "--max_semi_space_size=4"), ["--max-old-space-size=96"]);
  assert.equal(hasOldSpaceFlag([], "--max-old-space-size-x"), false);
  assert.throws(() => heapBudgetFlags({ maxOldSpaceMiB: -1 }, [], undefined), RangeError);
  assert.throws(() => heapBudgetFlags({ maxOldSpaceMiB: 1.5 }, [], undefined), RangeError);
  assert.throws(() => heapBudgetFlags({ maxOldSpaceMiB: 96, maxSemiSpaceMiB: -2 }, [], undefined), RangeError);
  assert.equal(withNodeOptions(undefined, ["--a"]), "--a");
  assert.equal(withNodeOptions(" --b ", ["--a", "--c"]), "--b --a --c");
});

/** A stand-in for spawn: records the call and the signals sent; the test ends the "process". */
function fakeSpawn(): { spawn: (cmd: string, args: readonly string[], o: SpawnOptions) => ChildProcess; calls: { cmd: string; args: readonly string[]; o: SpawnOptions }[]; signals: string[]; child: EventEmitter } {
  const child = new EventEmitter();
  const signals: string[] = [];
  const calls: { cmd: string; args: readonly string[]; o: SpawnOptions }[] = [];
  Object.assign(child, { kill: (s: string) => (signals.push(s), true) });
  return { spawn: (cmd, args, o) => (calls.push({ cmd, args, o }), child as unknown as ChildProcess), calls, signals, child };
}

test("serve's restart carries the budget in NODE_OPTIONS with the malloc tuning, passes each signal on once, and returns the new process's exit code", { skip: detectRuntime().name !== "node" && "Node.js only: Deno is never restarted" }, async () => {
  const budget = { maxOldSpaceMiB: 96, maxSemiSpaceMiB: 1, mallocMmapThresholdBytes: 16384 };
  const f = fakeSpawn();
  const env = { NODE_OPTIONS: "--enable-source-maps", PATH: "/usr/bin" };
  const done = reexecWithHeapBudget({ budget, args: ["serve", "--listen", "127.0.0.1:0"], env, execArgv: ["--no-warnings"], script: "/opt/perilink.mjs", spawn: f.spawn });
  assert.ok(done);
  assert.equal(f.calls.length, 1);
  const call = f.calls[0]!;
  assert.equal(call.cmd, process.execPath);
  assert.deepEqual(call.args, ["--no-warnings", "/opt/perilink.mjs", "serve", "--listen", "127.0.0.1:0"]);
  assert.equal(call.o.env?.NODE_OPTIONS, "--enable-source-maps --max-old-space-size=96 --max-semi-space-size=1");
  assert.equal(call.o.env?.MALLOC_MMAP_THRESHOLD_, "16384");
  assert.equal(call.o.env?.[HEAP_BUDGET_ENV], "--max-old-space-size=96 --max-semi-space-size=1");
  assert.equal(call.o.detached, true, "its own process group: a terminal's Ctrl-C arrives once, through the stand-in");
  process.emit("SIGHUP", "SIGHUP");
  process.emit("SIGUSR2", "SIGUSR2");
  assert.deepEqual(f.signals, ["SIGHUP", "SIGUSR2"]);
  f.child.emit("exit", null, "SIGTERM");
  assert.equal(await done, 143);
  process.emit("SIGHUP", "SIGHUP");
  assert.deepEqual(f.signals, ["SIGHUP", "SIGUSR2"], "no forwarding after the exit");
  const g = fakeSpawn();
  const ok = reexecWithHeapBudget({ budget, args: ["serve"], env: {}, execArgv: [], script: "/opt/p.mjs", spawn: g.spawn })!;
  g.child.emit("exit", 0, null);
  assert.equal(await ok, 0);
});

test("serve does not restart itself when started by an upgrade, by socket activation, already restarted, or with the user's limit", () => {
  const budget = { maxOldSpaceMiB: 96 };
  const f = fakeSpawn();
  const base = { budget, args: ["serve"], execArgv: [] as string[], script: "/opt/p.mjs", spawn: f.spawn };
  assert.equal(reexecWithHeapBudget({ ...base, env: {}, startedByUpgrade: true }), null);
  assert.equal(reexecWithHeapBudget({ ...base, env: { LISTEN_FDS: "2" } }), null);
  assert.equal(reexecWithHeapBudget({ ...base, env: { [HEAP_BUDGET_ENV]: "--max-old-space-size=96" } }), null);
  assert.equal(reexecWithHeapBudget({ ...base, env: { NODE_OPTIONS: "--max-old-space-size=300" } }), null);
  assert.equal(reexecWithHeapBudget({ ...base, env: {}, execArgv: ["--max-old-space-size=300"] }), null);
  assert.equal(reexecWithHeapBudget({ ...base, budget: { maxOldSpaceMiB: 0 }, env: {} }), null);
  assert.equal(f.calls.length, 0);
});

test("the pi-zero-2w bundle's serve runs with the target's heap budget (96 MiB old space, 1 MiB semi-spaces), and status reports rss, heap used and the limit", async (t) => {
  const expected = await heapLimitWith(PI_FLAGS, cleanEnv());
  const s = await serveBundle(t, "pi-zero-2w");
  const st = await status(s);
  assert.equal(st.memory.heapLimitBytes, expected, `limit ${st.memory.heapLimitBytes / MiB} MiB, expected V8's ${expected / MiB} MiB for ${PI_FLAGS.join(" ")}`);
  assert.notEqual(st.pid, s.pid, "`node bundle serve` started itself again with the budget and stands in for it");
  assert.ok(st.memory.rssBytes > 8 * MiB && st.memory.rssBytes < 512 * MiB, `rss ${st.memory.rssBytes}`);
  assert.ok(st.memory.heapUsedBytes > 0 && st.memory.heapUsedBytes < st.memory.heapLimitBytes, `heap used ${st.memory.heapUsedBytes}`);
  const text = await run(nodeBin(), [s.bundle, "status", "--state-dir", s.stateDir], { env: cleanEnv() });
  assert.match(text.stdout, /^memory +rss [\d.]+ MiB +heap [\d.]+ MiB of [\d.]+ MiB limit$/m);
  // Signals reach the process that serves; its exit code comes back.
  await s.stop();
  assert.match(s.stderr(), /"drain_finished"/);
  if (detectRuntime().name === "node") assert.equal(await s.exited, 0);
});

test("the pi-zero-2w bundle run as an executable starts node once, with the budget: no stand-in process", async (t) => {
  const s = await serveBundle(t, "pi-zero-2w", "as-executable");
  const st = await status(s);
  assert.equal(st.pid, s.pid, "the process started is the one that serves");
  assert.equal(st.memory.heapLimitBytes, await heapLimitWith(PI_FLAGS, cleanEnv()));
});

/** One variable of a running process's environment, from /proc (Linux). */
async function envOf(pid: number, name: string): Promise<string | undefined> {
  const entries = (await fs.readFile(`/proc/${pid}/environ`, "utf8")).split("\0");
  return entries.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);
}

test("the pi-zero-2w serve runs with glibc's mmap threshold at the target's 16 KiB, started by node or as an executable; a value of the user's is kept", async (t) => {
  for (const how of [[], "as-executable"] as (string[] | "as-executable")[]) {
    const s = await serveBundle(t, "pi-zero-2w", how);
    assert.equal(await envOf((await status(s)).pid, "MALLOC_MMAP_THRESHOLD_"), "16384", `started ${how === "as-executable" ? how : "by node"}`);
    const mine = await serveBundle(t, "pi-zero-2w", how, cleanEnv({ MALLOC_MMAP_THRESHOLD_: "65536" }));
    assert.equal(await envOf((await status(mine)).pid, "MALLOC_MMAP_THRESHOLD_"), "65536");
  }
  const none = await serveBundle(t, "node20");
  assert.equal(await envOf((await status(none)).pid, "MALLOC_MMAP_THRESHOLD_"), undefined, "node20 sets no tuning");
});

test("a --max-old-space-size the user gives wins over the target's budget, on the command line or in NODE_OPTIONS", async (t) => {
  const onLine = await serveBundle(t, "pi-zero-2w", ["--max-old-space-size=200"]);
  const lineStatus = await status(onLine);
  assert.equal(lineStatus.memory.heapLimitBytes, await heapLimitWith(["--max-old-space-size=200"], cleanEnv()));
  assert.equal(lineStatus.pid, onLine.pid, "no second start when the user chose the limit");
  for (const how of [[], "as-executable"] as (string[] | "as-executable")[]) {
    const inEnv = await serveBundle(t, "pi-zero-2w", how, cleanEnv({ NODE_OPTIONS: "--max-old-space-size=160" }));
    assert.equal((await status(inEnv)).memory.heapLimitBytes, await heapLimitWith(["--max-old-space-size=160"], cleanEnv()), `started ${how === "as-executable" ? how : "by node"}`);
  }
});

test("a target without a budget (node20, 0) sets no limit", async (t) => {
  const s = await serveBundle(t, "node20");
  assert.equal((await status(s)).memory.heapLimitBytes, await heapLimitWith([], cleanEnv()));
});

test("the process after an upgrade runs with the target's heap limit too", async (t) => {
  const expected = await heapLimitWith(PI_FLAGS, cleanEnv());
  const s = await serveBundle(t, "pi-zero-2w");
  const before = await status(s);
  const up = await run(nodeBin(), [s.bundle, "upgrade", "--state-dir", s.stateDir, "--timeout", "20000"], { env: cleanEnv() });
  assert.match(up.stdout + up.stderr, /generation 2|"generation":2/);
  const st = await status(s);
  t.after(() => {
    try {
      process.kill(st.pid, "SIGTERM");
    } catch {
      // already gone
    }
  });
  assert.equal(st.generation, 2);
  assert.notEqual(st.pid, before.pid);
  assert.equal(st.memory.heapLimitBytes, expected, `after the upgrade: ${st.memory.heapLimitBytes / MiB} MiB`);
});

test("a target with a semi-space cap and no old-space limit (node20) keeps its young generation at the first size without a restart; a semi-space size of the user's wins", { skip: detectRuntime().name !== "node" && "Node.js only: the run-time flag is set by Node's serve" }, async () => {
  // The fake: which run-time flags a serving process sets, and that nothing is started.
  const f = fakeSpawn();
  const set: string[] = [];
  const base = { args: ["serve"], script: "/opt/p.mjs", spawn: f.spawn, setFlags: (flag: string) => void set.push(flag) };
  assert.equal(reexecWithHeapBudget({ ...base, budget: { maxOldSpaceMiB: 0, maxSemiSpaceMiB: 1 }, env: {}, execArgv: [] }), null);
  assert.deepEqual(set, ["--semi-space-growth-factor=1"]);
  assert.equal(reexecWithHeapBudget({ ...base, budget: { maxOldSpaceMiB: 0, maxSemiSpaceMiB: 1 }, env: {}, execArgv: ["--max-semi-space-size=8"] }), null);
  assert.equal(reexecWithHeapBudget({ ...base, budget: { maxOldSpaceMiB: 0, maxSemiSpaceMiB: 1 }, env: { NODE_OPTIONS: "--max-semi-space-size=8" }, execArgv: [] }), null);
  assert.equal(reexecWithHeapBudget({ ...base, budget: { maxOldSpaceMiB: 0 }, env: {}, execArgv: [] }), null);
  assert.deepEqual(set, ["--semi-space-growth-factor=1"], "no run-time flag when the user chose a semi-space size or the budget has none");
  assert.equal(f.calls.length, 0);

  // The real thing, with the node20 target's budget: a burst of short-lived garbage, then the new space's size.
  const probe = `
    import v8 from "node:v8";
    import { readFileSync } from "node:fs";
    import { reexecWithHeapBudget } from ${JSON.stringify(new URL("../../src/runtime/heap_reexec.ts", import.meta.url).href)};
    const budget = JSON.parse(readFileSync(${JSON.stringify(new URL("../../targets/node20.json", import.meta.url).pathname)}, "utf8")).memory;
    const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space").space_size;
    if (reexecWithHeapBudget({ budget, args: [], env: {}, execArgv: [] }) !== null) throw new Error("restarted");
    const before = newSpace();
    let keep = [];
    for (let i = 0; i < 3e6; i++) { keep.push({ i, a: [i] }); if (keep.length > 20000) keep = []; }
    process.stdout.write(JSON.stringify([before, newSpace()]));`;
  const { stdout } = await run(nodeBin(), ["--import", "tsx", "--input-type=module", "-e", probe], { env: cleanEnv() });
  const [before, after] = JSON.parse(stdout) as [number, number];
  // `perilink serve` gets there with 2 MiB (1 MiB semi-spaces, x64); a burst would grow it to 32 MiB.
  assert.equal(after, before, `new space ${before / MiB} MiB before a burst of garbage, ${after / MiB} MiB after`);
});

test("a target's minorGcTriggerPercent (pi-zero-2w) makes every serving process collect its young generation earlier: buffers freed only by that collection pile up less; a flag of the user's wins, and a bad value is refused", { skip: detectRuntime().name !== "node" && "Node.js only: the run-time flag is set by Node's serve" }, async () => {
  const f = fakeSpawn();
  const set: string[] = [];
  const base = { args: ["serve"], script: "/opt/p.mjs", spawn: f.spawn, setFlags: (flag: string) => void set.push(flag) };
  // The re-executed process (its budget in NODE_OPTIONS) and a process started by an upgrade set it too.
  assert.equal(reexecWithHeapBudget({ ...base, budget: { maxOldSpaceMiB: 96, maxSemiSpaceMiB: 1, minorGcTriggerPercent: 20 }, env: { [HEAP_BUDGET_ENV]: "x", NODE_OPTIONS: "--max-old-space-size=96 --max-semi-space-size=1" }, execArgv: [] }), null);
  assert.equal(reexecWithHeapBudget({ ...base, budget: { maxOldSpaceMiB: 96, minorGcTriggerPercent: 20 }, env: {}, execArgv: [], startedByUpgrade: true }), null);
  assert.deepEqual(set, ["--minor-gc-task-trigger=20", "--minor-gc-task-trigger=20"]);
  assert.equal(reexecWithHeapBudget({ ...base, budget: { maxOldSpaceMiB: 0, minorGcTriggerPercent: 20 }, env: {}, execArgv: ["--minor_gc_task_trigger=50"] }), null);
  assert.equal(set.length, 2, "the user's own trigger is kept");
  assert.throws(() => reexecWithHeapBudget({ ...base, budget: { maxOldSpaceMiB: 0, minorGcTriggerPercent: 0 }, env: {}, execArgv: [] }), /memory\.minorGcTriggerPercent must be a whole number from 1 to 100, not 0/);
  assert.equal(f.calls.length, 0);

  // The real thing: 16 KiB buffers (a socket read's, a record's plaintext) dropped at once, the event loop turning;
  // the most held at once with the pi-zero-2w budget against V8's default, set at run time as serve sets it.
  const probe = (budget: string): string => `
    import { reexecWithHeapBudget } from ${JSON.stringify(new URL("../../src/runtime/heap_reexec.ts", import.meta.url).href)};
    if (reexecWithHeapBudget({ budget: ${budget}, args: [], env: {}, execArgv: [] }) !== null) throw new Error("restarted");
    let peak = 0;
    const keep = [];
    for (let i = 0; i < 400; i++) {
      for (let j = 0; j < 50; j++) {
        keep.push({ b: Buffer.allocUnsafeSlow(16384), i, j });
        if (keep.length > 8) keep.shift();
      }
      peak = Math.max(peak, process.memoryUsage().arrayBuffers);
      await new Promise((r) => setImmediate(r));
    }
    process.stdout.write(String(peak));`;
  const peak = async (budget: string): Promise<number> => {
    const { stdout } = await run(nodeBin(), ["--max-semi-space-size=1", "--import", "tsx", "--input-type=module", "-e", probe(budget)], { env: cleanEnv() });
    return Number(stdout);
  };
  const pi = JSON.parse(await fs.readFile(new URL("../../targets/pi-zero-2w.json", import.meta.url), "utf8")).memory as { minorGcTriggerPercent: number };
  assert.equal(pi.minorGcTriggerPercent, 20);
  const earlier: number[] = [];
  const late: number[] = [];
  for (let i = 0; i < 3; i++) {
    earlier.push(await peak(`{ maxOldSpaceMiB: 0, minorGcTriggerPercent: ${pi.minorGcTriggerPercent} }`));
    late.push(await peak("{ maxOldSpaceMiB: 0 }"));
  }
  const median = (a: number[]): number => [...a].sort((x, y) => x - y)[1]!;
  assert.ok(median(earlier) < 0.75 * median(late), `most buffers held at once: ${median(earlier) / MiB} MiB with the trigger at ${pi.minorGcTriggerPercent} %, ${median(late) / MiB} MiB at V8's 80 %`);
});
