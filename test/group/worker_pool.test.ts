import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { test } from "node:test";
import { createLogger } from "../../src/logger.ts";
import { BACKOFF_BASE_MS, CRASH_LOOP_COUNT, WorkerPool, type RollingStart, type Worker } from "../../src/group/worker_pool.ts";
import { sleep, waitFor } from "../helpers/fixtures.ts";

/** A fake service process: says ready when told, records what it was sent, exits on demand. */
class FakeChild extends EventEmitter {
  static nextPid = 50_000;
  pid = FakeChild.nextPid++;
  connected = true;
  exitCode: number | null = null;
  signalCode: string | null = null;
  sent: unknown[] = [];
  send(msg: unknown, cb?: () => void): boolean {
    this.sent.push(msg);
    if ((msg as { t?: string }).t === "drain") setImmediate(() => this.exit(0));
    cb?.();
    return true;
  }
  kill(): boolean {
    this.exit(null, "SIGKILL");
    return true;
  }
  ready(): void {
    this.emit("message", { t: "ready" });
  }
  exit(code: number | null, signal: string | null = null): void {
    if (this.exitCode !== null || this.signalCode !== null) return;
    this.exitCode = code;
    this.signalCode = signal;
    this.connected = false;
    this.emit("exit", code, signal);
  }
}

function pool(range: { min: number; max: number }, idleMs = 60_000, rolling?: RollingStart): { pool: WorkerPool; children: FakeChild[]; log: string[] } {
  const children: FakeChild[] = [];
  const log: string[] = [];
  const p = new WorkerPool({
    ...(rolling ? { rolling } : {}),
    range,
    idleMs,
    log: createLogger("debug", (l) => log.push(l)),
    spawn: () => {
      const c = new FakeChild();
      children.push(c);
      // Ready on the next turn, as a real process says so once it has loaded.
      setImmediate(() => c.ready());
      return c as unknown as ChildProcess;
    },
    events: { ready: () => {}, exit: () => {}, message: () => {} },
  });
  return { pool: p, children, log };
}

test("a slot that dies is restarted after 100, 200, 400, 800 ms, and left failed at the fifth death within the window", async () => {
  const { pool: p, children, log } = pool({ min: 2, max: 2 });
  await p.start();
  assert.equal(p.ready().length, 2);
  const slot0 = (): Worker => p.workers.find((w) => w.slot === 0)!;
  const times: number[] = [];
  for (let i = 0; i < CRASH_LOOP_COUNT; i++) {
    const child = slot0().child as unknown as FakeChild;
    const died = Date.now();
    child.exit(3);
    if (i === CRASH_LOOP_COUNT - 1) break;
    await waitFor(() => slot0().state === "ready" && slot0().child !== (child as unknown as ChildProcess), `restart ${i + 1}`, 5000);
    times.push(Date.now() - died);
  }
  const delays = log.filter((l) => l.includes('"worker_restarting"')).map((l) => (JSON.parse(l) as { delayMs: number }).delayMs);
  assert.deepEqual(delays, [BACKOFF_BASE_MS, 200, 400, 800]);
  times.forEach((t, i) => assert.ok(t >= delays[i]!, `restart ${i + 1} waited ${t} ms`));
  assert.equal(slot0().state, "failed");
  assert.equal(slot0().restarts, 4);
  assert.ok(log.some((l) => l.includes('"worker_crash_loop"')));
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(children.length, 2 + 4, "no restart after the verdict");
  assert.equal(p.ready().length, 1, "the other slot serves on");
  await p.drain(1000);
});

test("grow() adds one process at a time up to max; an idle one above min is retired", async () => {
  const { pool: p } = pool({ min: 1, max: 3 }, 200);
  await p.start();
  p.ready()[0]!.conns = 5; // busy: not idle
  p.grow();
  p.grow(); // one is starting already: no second
  assert.equal(p.workers.length, 2);
  await waitFor(() => p.ready().length === 2, "the second to be ready");
  p.ready()[1]!.conns = 1;
  p.grow();
  await waitFor(() => p.ready().length === 3, "the third to be ready");
  p.grow();
  assert.equal(p.workers.length, 3, "never above max");
  for (const w of p.ready()) {
    w.conns = 0;
    w.idleSince = Date.now();
  }
  await waitFor(() => p.workers.length === 1, "idle processes above min to be retired", 5000);
  assert.equal(p.workers[0]!.slot, 0, "the highest slots go first");
  await p.drain(1000);
  assert.ok(p.workers.every((w) => (w.child as unknown as FakeChild).exitCode !== null));
});

test("drain() asks every process to drain and does not restart them when they exit", async () => {
  const { pool: p, children } = pool({ min: 2, max: 2 });
  await p.start();
  await p.drain(1000);
  assert.ok(children.every((c) => c.sent.some((m) => (m as { t: string }).t === "drain")));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(children.length, 2);
});

/** Real processes standing in for an old group's service processes: each exits when killed. */
function oldGroup(n: number): ChildProcess[] {
  return Array.from({ length: n }, () => spawn("sleep", ["60"], { stdio: "ignore" }));
}

async function kill(c: ChildProcess): Promise<void> {
  const exited = new Promise((r) => c.once("exit", r));
  c.kill("SIGKILL");
  await exited;
}

test("a rolling start runs upgradeSurge processes beside the old group and one more as each old one exits, up to min; grow() keeps within it", async () => {
  const old = oldGroup(4);
  try {
    const { pool: p, log } = pool({ min: 4, max: 6 }, 60_000, { drainingPids: old.map((c) => c.pid!), parentPid: process.pid, surge: 1, windowMs: 30_000 });
    await p.start();
    p.handedOver();
    assert.equal(p.workers.length, 1, "one beside the four old ones");
    p.ready()[0]!.conns = 99;
    p.grow();
    assert.equal(p.workers.length, 1, "all busy, but the old group still holds its memory: no second");
    await kill(old[0]!);
    await waitFor(() => p.ready().length === 2, "a second once an old one exited", 2000);
    await sleep(200);
    assert.equal(p.workers.length, 2, "no more while three old ones run");
    await kill(old[1]!);
    await kill(old[2]!);
    await waitFor(() => p.ready().length === 4, "two more for the next two", 2000);
    await kill(old[3]!);
    await waitFor(() => log.some((l) => l.includes('"group_rolled"')), "the roll to end", 2000);
    assert.equal(p.workers.length, 4, "min, not beyond, when the last old one exits");
    for (const w of p.ready()) w.conns = 99;
    p.grow();
    assert.equal(p.workers.length, 5, "after the roll the group grows to max as before");
    assert.equal(log.filter((l) => l.includes("rolling upgrade")).length, 3, "each addition is logged with why");
    await p.drain(1000);
  } finally {
    for (const c of old) c.kill("SIGKILL");
  }
});

test("a rolling start stops waiting at its deadline: an old process that never exits holds the group back only until then", async () => {
  const old = oldGroup(2);
  try {
    const { pool: p, log } = pool({ min: 3, max: 3 }, 60_000, { drainingPids: old.map((c) => c.pid!), parentPid: process.pid, surge: 1, windowMs: 400 });
    await p.start();
    assert.equal(p.workers.length, 1);
    await sleep(600);
    assert.equal(p.workers.length, 1, "no deadline runs before the handover");
    p.handedOver();
    await waitFor(() => p.ready().length === 3, "the rest of the group once the deadline passed", 3000);
    assert.ok(log.some((l) => l.includes('"group_rolling_timeout"')), "the timeout is logged with the processes still running");
    await p.drain(1000);
  } finally {
    for (const c of old) c.kill("SIGKILL");
  }
});

test("a rolling start counts only the old group's own processes (an alive pid that is not its child counts as gone) and leaves crash-looping slots stopped", async () => {
  const old = oldGroup(1);
  // An alive process that is no child of ours: what a pid reused by another program looks like.
  const sh = spawn("sh", ["-c", "sleep 60 & echo $!; wait"], { stdio: ["ignore", "pipe", "ignore"] });
  const foreign = Number(await new Promise<string>((r) => sh.stdout!.once("data", (d: Buffer) => r(d.toString()))));
  try {
    const children: FakeChild[] = [];
    const log: string[] = [];
    const p = new WorkerPool({
      range: { min: 3, max: 3 },
      idleMs: 60_000,
      rolling: { drainingPids: [old[0]!.pid!, foreign], parentPid: process.pid, surge: 1, windowMs: 60_000 },
      log: createLogger("debug", (l) => log.push(l)),
      spawn: (slot) => {
        const c = new FakeChild();
        children.push(c);
        // Slot 0 starts; every other slot dies at once, as a new version that crashes beside another would.
        setImmediate(() => (slot === 0 ? c.ready() : c.exit(3)));
        return c as unknown as ChildProcess;
      },
      events: { ready: () => {}, exit: () => {}, message: () => {} },
    });
    await p.start();
    p.handedOver();
    assert.equal(children.length, 1);
    await waitFor(() => children.length >= 2, "a second process: the foreign pid does not hold the group back", 2000);
    await waitFor(() => p.workers.some((w) => w.state === "failed"), "slot 1's crash loop to be reported", 10_000);
    await sleep(800);
    assert.equal(p.workers.filter((w) => w.state === "failed").length, 1, "one failed slot; no fresh slot replaces it while the old process runs");
    const spawned = children.length;
    await sleep(1000);
    assert.equal(children.length, spawned, `no more processes started (${children.length} in all)`);
    await kill(old[0]!);
    await waitFor(() => log.some((l) => l.includes('"group_rolled"')), "the roll to end", 2000);
    assert.ok(p.workers.length <= 3, `never more slots than min: ${p.workers.map((w) => `${w.slot}:${w.state}`).join(" ")}`);
    await p.drain(500);
  } finally {
    for (const c of old) c.kill("SIGKILL");
    try {
      process.kill(foreign, "SIGKILL");
    } catch {
      // gone
    }
    sh.kill("SIGKILL");
  }
});
