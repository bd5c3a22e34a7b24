import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { test } from "node:test";
import { createLogger } from "../../src/logger.ts";
import { BACKOFF_BASE_MS, CRASH_LOOP_COUNT, WorkerPool, type Worker } from "../../src/group/worker_pool.ts";
import { waitFor } from "../helpers/fixtures.ts";

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

function pool(range: { min: number; max: number }, idleMs = 60_000): { pool: WorkerPool; children: FakeChild[]; log: string[] } {
  const children: FakeChild[] = [];
  const log: string[] = [];
  const p = new WorkerPool({
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
