/**
 * The old side of a handoff (`Upgrader`) through its seams: a fake spawn that
 * returns a fake new process speaking the handoff protocol, a fake kill, and a
 * fake host. No process is started and no socket is opened, so every path
 * (success, the new process failing, exiting, timing out, a cancellation) is
 * exercised exactly, in milliseconds. The real processes are in
 * handoff_faults.test.ts.
 */
import assert from "node:assert/strict";
import type { ChildProcess, SpawnOptions } from "node:child_process";
import { EventEmitter } from "node:events";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { UpgradeError } from "../../src/errors.ts";
import { createLogger } from "../../src/logger.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { APP_STATE_ENV, GENERATION_ENV, HANDOFF_ENV, PORTS_ENV, type AppStates, type DrainingGeneration, type OldToNew } from "../../src/handoff/handoff_protocol.ts";
import { Upgrader, type UpgradeHost } from "../../src/handoff/upgrader.ts";
import { sleep, waitFor } from "../helpers/fixtures.ts";

/** A new process as the upgrader sees it: messages both ways, exit, kill. */
class FakeChild extends EventEmitter {
  readonly pid = 4242;
  connected = true;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly received: OldToNew[] = [];

  send(msg: OldToNew, cb?: (err: Error | null) => void): boolean {
    this.received.push(msg);
    this.emit("received", msg);
    cb?.(null);
    return true;
  }
  disconnect(): void {
    this.connected = false;
  }
  unref(): void {}
  /** The new program says something on the IPC channel. */
  say(msg: unknown): void {
    setImmediate(() => this.emit("message", msg));
  }
  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    if (this.exitCode !== null || this.signalCode !== null) return;
    this.exitCode = code;
    this.signalCode = signal;
    this.connected = false;
    this.emit("exit", code, signal);
  }
  /** Resolves when the upgrader sends message `t`. */
  next(t: OldToNew["t"]): Promise<OldToNew> {
    const seen = this.received.find((m) => m.t === t);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const on = (m: OldToNew): void => {
        if (m.t !== t) return;
        this.off("received", on);
        resolve(m);
      };
      this.on("received", on);
    });
  }
}

interface Harness {
  upgrader: Upgrader;
  child: FakeChild;
  calls: string[];
  spawned: { cmd: string; args: string[]; options: SpawnOptions }[];
  killed: number[];
  logs: string[];
  /** Resolves the host's drain. */
  finishDrain(): void;
}

interface HarnessOptions {
  exitOnKill?: boolean;
  resumeFails?: boolean;
  spawnThrows?: boolean;
  script?: string;
  /** What the app put for the next generation: descriptors (or a throw, as for a closed one) and the state. */
  appDescriptors?: () => { name: string; fd: number }[];
  appState?: () => AppStates | Promise<AppStates>;
  /** The host's probation (0: none). */
  probationMs?: number;
}

function harness(options: HarnessOptions = {}): Harness {
  const calls: string[] = [];
  const spawned: Harness["spawned"] = [];
  const killed: number[] = [];
  const logs: string[] = [];
  const child = new FakeChild();
  let finishDrain!: () => void;
  const drained = new Promise<void>((r) => (finishDrain = r));
  const report: DrainingGeneration = { generation: 1, pid: process.pid, inflight: 3, sessions: 2 };
  const host: UpgradeHost = {
    generation: 1,
    log: createLogger("debug", (line) => logs.push(line)),
    handoffSockets: () => [{ name: "tcp@127.0.0.1@1025", fd: 20 }, { name: "udp@127.0.0.1@1025", fd: 21 }],
    stopAccepting: async (keep) => void calls.push(keep ? "stopAccepting keeping its sockets" : "stopAccepting"),
    resumeAccepting: async () => {
      calls.push("resumeAccepting");
      if (options.resumeFails) throw new Error("EADDRINUSE");
      return calls.includes("stopAccepting keeping its sockets");
    },
    closeKept: () => void calls.push("closeKept"),
    probationMs: options.probationMs ?? 0,
    drain: async () => {
      calls.push("drain");
      await drained;
    },
    drainReport: () => report,
    olderGenerations: () => [],
    resolvedPorts: () => ({ "127.0.0.1:0": 40000 }),
    ...(options.appDescriptors ? { appDescriptors: options.appDescriptors } : {}),
    ...(options.appState ? { appState: options.appState } : {}),
  };
  const upgrader = new Upgrader(
    host,
    { execPath: "/usr/bin/node-fake", execArgv: ["--import", "tsx"], script: options.script ?? fileURLToPath(import.meta.url), args: ["serve", "--app", "old.mjs"] },
    {
      spawn: (cmd, args, spawnOptions) => {
        if (options.spawnThrows) throw new Error("EAGAIN");
        spawned.push({ cmd, args, options: spawnOptions });
        return child as unknown as ChildProcess;
      },
      killGroup: (c) => {
        killed.push(c.pid!);
        if (options.exitOnKill !== false) setImmediate(() => child.exit(null, "SIGKILL"));
      },
    },
  );
  return { upgrader, child, calls, spawned, killed, logs, finishDrain };
}

function rejectsWith(code: string, re: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof UpgradeError, `an UpgradeError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, re);
    return true;
  };
}

test("success: the new process is started in its own group with the sockets, takes over, and the old one drains and reports", async () => {
  const h = harness();
  const up = h.upgrader.upgrade({ app: "new.mjs", timeoutMs: 2000 });
  await waitFor(() => h.spawned.length === 1, "the spawn");
  const s = h.spawned[0]!;
  assert.equal(s.cmd, "/usr/bin/node-fake");
  assert.deepEqual(s.args.slice(0, 3), ["--import", "tsx", fileURLToPath(import.meta.url)], "a script runs with the runtime and its arguments");
  assert.deepEqual(s.args.slice(s.args.indexOf("serve")), ["serve", "--app", "new.mjs"], "the app is replaced, not added twice");
  assert.equal(s.options.detached, true, "its own process group");
  const env = s.options.env!;
  assert.equal(env[GENERATION_ENV], "2");
  assert.equal(env[HANDOFF_ENV], detectRuntime().handoff);
  if (detectRuntime().handoff === "inherit") {
    assert.deepEqual(s.options.stdio, ["ignore", "inherit", "inherit", 20, 21, "ipc"], "the sockets from fd 3, then the IPC channel");
    assert.equal(env.LISTEN_FDNAMES, "tcp@127.0.0.1@1025:udp@127.0.0.1@1025");
    assert.equal(env.LISTEN_FDS, "2");
  } else {
    assert.deepEqual(s.options.stdio, ["ignore", "inherit", "inherit", "ipc"], "no sockets (the new process binds the ports with SO_REUSEPORT), the IPC channel");
    assert.equal(env.LISTEN_FDS, "0");
  }
  assert.deepEqual(JSON.parse(env[PORTS_ENV]!), { "127.0.0.1:0": 40000 });
  assert.deepEqual(h.upgrader.inProgress?.pid, 4242);

  h.child.say({ t: "transfer-request" });
  await h.child.next("transfer-response");
  assert.deepEqual(h.calls, ["stopAccepting"], "the old process stopped accepting before answering");
  h.child.say({ t: "accepting", pid: 4242, generation: 2 });
  const r = await up;
  assert.equal(r.generation, 2);
  assert.equal(r.pid, 4242);
  assert.equal(r.previousPid, process.pid);
  assert.equal(h.upgrader.handedOver, true);
  assert.equal(h.upgrader.inProgress, null);
  assert.deepEqual(h.killed, [], "nothing killed");

  const draining = (await h.child.next("draining")) as Extract<OldToNew, { t: "draining" }>;
  assert.deepEqual(draining.report, { generation: 1, pid: process.pid, inflight: 3, sessions: 2 });
  assert.ok(h.calls.includes("drain"));
  let done = false;
  void h.upgrader.done.then(() => (done = true));
  await sleep(20);
  assert.equal(done, false, "not done while draining");
  h.finishDrain();
  await h.upgrader.done;
  const drained = (await h.child.next("drained")) as { t: string; generation: number; counters?: unknown };
  assert.deepEqual({ t: drained.t, generation: drained.generation }, { t: "drained", generation: 1 });
  assert.equal(typeof drained.counters, "object", "with the old process's final totals, for the new one to add what it served since");
  assert.equal(h.child.connected, false, "the IPC channel is closed after the last report");
  await assert.rejects(h.upgrader.upgrade(), rejectsWith("PERILINK_UPGRADE_IN_PROGRESS", /already handed over/));
});

test("a new process that exits before it is ready: rejected, nothing stopped, this process keeps serving", async () => {
  const h = harness();
  const up = h.upgrader.upgrade({ timeoutMs: 2000 });
  await waitFor(() => h.spawned.length === 1, "the spawn");
  h.child.exit(1);
  await assert.rejects(up, rejectsWith("PERILINK_UPGRADE_FAILED", /^Cannot upgrade: the new program exited with code 1 before it was ready .*\(generation 1\) keeps serving$/));
  assert.deepEqual(h.calls, [], "never stopped accepting, so nothing to resume");
  assert.equal(h.upgrader.inProgress, null);
  assert.equal(h.upgrader.handedOver, false);
  assert.match(h.logs.join(""), /"upgrade_rolled_back"/);
});

test("a new process that is not ready in time: killed (its group), and the rejection waits until it is gone", async () => {
  const h = harness({ exitOnKill: false });
  const t0 = Date.now();
  const up = h.upgrader.upgrade({ timeoutMs: 100 });
  let settled = false;
  void up.catch(() => (settled = true));
  await waitFor(() => h.killed.length === 1, "the kill", 2000);
  assert.ok(Date.now() - t0 >= 100, "not before the timeout");
  await sleep(30);
  assert.equal(settled, false, "still waiting for the killed process to exit");
  h.child.exit(null, "SIGKILL");
  await assert.rejects(up, rejectsWith("PERILINK_UPGRADE_FAILED", /the new program was not ready within 100 ms and was killed/));
  assert.deepEqual(h.killed, [4242]);
  assert.deepEqual(h.calls, []);
});

test("a new process that dies after the handover began: this process binds its ports again", async () => {
  const h = harness();
  const up = h.upgrader.upgrade({ timeoutMs: 2000 });
  await waitFor(() => h.spawned.length === 1, "the spawn");
  h.child.say({ t: "transfer-request" });
  await h.child.next("transfer-response");
  h.child.exit(3);
  await assert.rejects(up, rejectsWith("PERILINK_UPGRADE_FAILED", /exited with code 3 before it was accepting .*after the handover began; the running process bound its ports again/));
  assert.deepEqual(h.calls, ["stopAccepting", "resumeAccepting"]);
  assert.deepEqual(h.killed, [4242], "its group is killed too (a launcher's children)");
  assert.equal(h.upgrader.handedOver, false);
});

test("a new process that never says it is accepting: killed at the timeout, then the ports are bound again", async () => {
  const h = harness();
  const up = h.upgrader.upgrade({ timeoutMs: 150 });
  await waitFor(() => h.spawned.length === 1, "the spawn");
  h.child.say({ t: "transfer-request" });
  await assert.rejects(up, rejectsWith("PERILINK_UPGRADE_FAILED", /was not accepting within 150 ms and was killed after the handover began/));
  assert.deepEqual(h.calls, ["stopAccepting", "resumeAccepting"]);
  assert.deepEqual(h.killed, [4242]);
});

test("a rollback that cannot bind the ports again makes `done` reject: the process cannot serve any more", async () => {
  const h = harness({ resumeFails: true });
  const up = h.upgrader.upgrade({ timeoutMs: 2000 });
  await waitFor(() => h.spawned.length === 1, "the spawn");
  h.child.say({ t: "transfer-request" });
  await h.child.next("transfer-response");
  h.child.exit(3);
  await assert.rejects(up, rejectsWith("PERILINK_UPGRADE_FAILED", /cannot serve any more: .*binding the ports again failed \(EADDRINUSE\)/));
  await assert.rejects(h.upgrader.done, rejectsWith("PERILINK_UPGRADE_FAILED", /cannot serve any more/));
});

test("cancel() before the new process is ready: its group is killed, nothing is stopped or bound again, cancel() waits until it is gone", async () => {
  const h = harness({ exitOnKill: false });
  const up = h.upgrader.upgrade({ timeoutMs: 5000 });
  void up.catch(() => {});
  await waitFor(() => h.spawned.length === 1, "the spawn");
  let cancelled = false;
  const cancel = h.upgrader.cancel("the server is shutting down").then(() => (cancelled = true));
  await waitFor(() => h.killed.length === 1, "the kill");
  await sleep(20);
  assert.equal(cancelled, false, "cancel() waits for the killed process to exit");
  h.child.exit(null, "SIGKILL");
  await cancel;
  await assert.rejects(up, rejectsWith("PERILINK_UPGRADE_CANCELLED", /^Cannot upgrade: the server is shutting down; the new program \(pid 4242\) was stopped$/));
  assert.deepEqual(h.calls, []);
  assert.equal(h.upgrader.inProgress, null);
  assert.match(h.logs.join(""), /"upgrade_cancelled"/);
});

test("cancel() after this process stopped accepting: the new process is killed and the ports are not bound again", async () => {
  const h = harness();
  const up = h.upgrader.upgrade({ timeoutMs: 5000 });
  void up.catch(() => {});
  await waitFor(() => h.spawned.length === 1, "the spawn");
  h.child.say({ t: "transfer-request" });
  await h.child.next("transfer-response");
  await h.upgrader.cancel("the server is shutting down");
  await assert.rejects(up, rejectsWith("PERILINK_UPGRADE_CANCELLED", /shutting down/));
  assert.deepEqual(h.calls, ["stopAccepting"], "no resumeAccepting: the caller is shutting down");
  assert.deepEqual(h.killed, [4242]);
});

test("cancel() when idle or after the handover does nothing", async () => {
  const h = harness();
  await h.upgrader.cancel("nothing runs");
  const up = h.upgrader.upgrade({ timeoutMs: 2000 });
  await waitFor(() => h.spawned.length === 1, "the spawn");
  h.child.say({ t: "transfer-request" });
  await h.child.next("transfer-response");
  h.child.say({ t: "accepting", pid: 4242, generation: 2 });
  await up;
  await h.upgrader.cancel("too late");
  assert.deepEqual(h.killed, []);
  assert.equal(h.upgrader.handedOver, true);
  h.finishDrain();
  await h.upgrader.done;
});

test("a second upgrade while one is under way is refused; a program that does not exist or cannot be started is refused", async () => {
  const h = harness();
  const first = h.upgrader.upgrade({ timeoutMs: 2000 });
  void first.catch(() => {});
  await waitFor(() => h.spawned.length === 1, "the spawn");
  await assert.rejects(h.upgrader.upgrade(), rejectsWith("PERILINK_UPGRADE_IN_PROGRESS", /already under way \(new pid 4242, for \d+ ms\)/));
  h.child.exit(1);
  await assert.rejects(first);

  const missing = harness({ script: "/nonexistent/perilink.mjs" });
  await assert.rejects(missing.upgrader.upgrade(), rejectsWith("PERILINK_UPGRADE_FAILED", /program \/nonexistent\/perilink\.mjs does not exist; nothing was changed/));
  assert.equal(missing.spawned.length, 0);

  const broken = harness({ spawnThrows: true });
  await assert.rejects(broken.upgrader.upgrade(), rejectsWith("PERILINK_UPGRADE_FAILED", /cannot start .*: EAGAIN/));
  assert.equal(broken.upgrader.inProgress, null);
});

/** The rest of an upgrade that goes well: the new process asks, accepts, and this one drains. */
async function handOverAndDrain(h: Harness, up: Promise<unknown>): Promise<void> {
  h.child.say({ t: "transfer-request" });
  await h.child.next("transfer-response");
  h.child.say({ t: "accepting", pid: 4242, generation: 2 });
  await up;
  h.finishDrain();
  await h.upgrader.done;
}

test("what the app put: its descriptors follow the sockets, named app@NAME; its state answers the new process's request, as it is then", async () => {
  let state = '{"n":1}';
  const h = harness({ appDescriptors: () => [{ name: "journal", fd: 30 }], appState: () => ({ state }) });
  const up = h.upgrader.upgrade({ timeoutMs: 2000 });
  await waitFor(() => h.spawned.length === 1, "the spawn");
  const { options } = h.spawned[0]!;
  assert.equal(options.env![APP_STATE_ENV], "1", "the new process may ask for the state");
  if (detectRuntime().handoff === "inherit") {
    assert.deepEqual(options.stdio, ["ignore", "inherit", "inherit", 20, 21, 30, "ipc"]);
    assert.equal(options.env!.LISTEN_FDS, "3");
    assert.equal(options.env!.LISTEN_FDNAMES, "tcp@127.0.0.1@1025:udp@127.0.0.1@1025:app@journal");
  } else {
    assert.deepEqual(options.stdio, ["ignore", "inherit", "inherit", "ipc"], "no descriptors pass (the app cannot put any there)");
  }
  state = '{"n":2}';
  h.child.say({ t: "app-state-request" });
  const answer = await h.child.next("app-state");
  assert.deepEqual(answer, { t: "app-state", state: '{"n":2}' }, "the state when asked, not when the upgrade began");
  await handOverAndDrain(h, up);
});

test("a group's states (asked of its service processes, so later) answer the new process's request once they are in; a failure to gather them answers none", async () => {
  for (const [appState, want] of [
    [async () => (await sleep(30), { state: "a", states: ["a", "b"] }), { t: "app-state", state: "a", states: ["a", "b"] }],
    [async () => Promise.reject(new Error("gone")), { t: "app-state", state: null }],
  ] as const) {
    const h = harness({ appState });
    const up = h.upgrader.upgrade({ timeoutMs: 2000 });
    await waitFor(() => h.spawned.length === 1, "the spawn");
    h.child.say({ t: "app-state-request" });
    assert.deepEqual(await h.child.next("app-state"), want);
    await handOverAndDrain(h, up);
  }
});

test("a descriptor the app put that is closed now: the upgrade is refused before anything starts", async (t) => {
  if (detectRuntime().handoff !== "inherit") return t.skip("descriptors pass only where sockets do (Node.js)");
  const h = harness({
    appDescriptors: () => {
      throw new Error('Cannot hand on "journal": descriptor 30 is not an open descriptor above 2, socket or server');
    },
  });
  await assert.rejects(h.upgrader.upgrade(), rejectsWith("PERILINK_UPGRADE_FAILED", /^Cannot upgrade: the app's handoff: Cannot hand on "journal": descriptor 30 is not an open descriptor above 2, socket or server; nothing was changed$/));
  assert.equal(h.spawned.length, 0);
});

test("a new process that says it cannot start: rolled back with its reason and its code, given a moment to exit by itself", async () => {
  const h = harness({ exitOnKill: false });
  const up = h.upgrader.upgrade({ timeoutMs: 5000 });
  await waitFor(() => h.spawned.length === 1, "the spawn");
  h.child.say({ t: "start-failed", why: "Cannot start app a.mjs: its ready() failed: disk full", code: "PERILINK_APP_NOT_READY" });
  await sleep(50);
  assert.deepEqual(h.killed, [], "not killed while it exits");
  h.child.exit(1);
  await assert.rejects(
    up,
    (err: Error & { code?: string; reason?: string }) =>
      err.code === "PERILINK_UPGRADE_FAILED" &&
      err.reason === "PERILINK_APP_NOT_READY" &&
      /^Cannot upgrade: the new program could not start: Cannot start app a\.mjs: its ready\(\) failed: disk full; the running process \(generation 1\) keeps serving$/.test(err.message),
  );
  assert.deepEqual(h.calls, [], "it never stopped accepting");
});

/** Runs an upgrade to the point where the new process accepts, with a probation of `probationMs`. */
async function toAccepting(probationMs: number, park = true): Promise<{ h: Harness; up: Promise<unknown>; acceptedAt: number }> {
  const h = harness({ probationMs });
  const up = h.upgrader.upgrade({ timeoutMs: 5000 });
  void up.catch(() => {});
  await waitFor(() => h.spawned.length === 1, "the spawn");
  h.child.say(park ? { t: "transfer-request", park: true } : { t: "transfer-request" });
  await h.child.next("transfer-response");
  // Taken before the message goes: the probation cannot end sooner than probationMs after it (a stall here must not count).
  const acceptedAt = Date.now();
  h.child.say({ t: "accepting", pid: 4242, generation: 2 });
  await sleep(5);
  return { h, up, acceptedAt };
}

test("probation: this process keeps its sockets until the new one has accepted for probationMs, then lets them go and drains", async (t) => {
  if (detectRuntime().handoff !== "inherit") return t.skip("with SO_REUSEPORT (Deno) there are no sockets to keep");
  const { h, up, acceptedAt } = await toAccepting(200);
  t.after(() => h.finishDrain()); // a failed assertion must not leave the drain's report timer running (the file then hung)
  assert.deepEqual(h.calls, ["stopAccepting keeping its sockets"]);
  assert.equal(h.upgrader.handedOver, false, "not handed over during the probation");
  assert.ok(!h.calls.includes("drain"), "its sessions are served on, not drained, meanwhile");
  const r = (await up) as { generation: number };
  assert.equal(r.generation, 2);
  assert.ok(Date.now() - acceptedAt >= 195, `the upgrade reports once the probation passed (${Date.now() - acceptedAt} ms after accepting)`);
  assert.deepEqual(h.calls.slice(0, 2), ["stopAccepting keeping its sockets", "closeKept"]);
  await waitFor(() => h.calls.includes("drain"), "the drain");
  h.finishDrain();
  await h.upgrader.done;
});

test("probation: a new process that crashes within it hands the port group back: this process accepts again on the kept sockets", async (t) => {
  if (detectRuntime().handoff !== "inherit") return t.skip("with SO_REUSEPORT (Deno) there are no sockets to keep");
  const { h, up } = await toAccepting(2000);
  h.child.exit(7);
  await assert.rejects(
    up,
    rejectsWith("PERILINK_UPGRADE_FAILED", /^Cannot upgrade: the new program exited with code 7 \d+ ms after it began accepting \(probationMs 2000\); the running process took its listening sockets back and keeps serving$/),
  );
  assert.deepEqual(h.calls, ["stopAccepting keeping its sockets", "resumeAccepting"]);
  assert.equal(h.upgrader.handedOver, false);
  assert.match(h.logs.join(""), /"upgrade_rolled_back"/);
});

test("probation: a clean exit (code 0: stopped on purpose) or a shutdown of this process ends it as handed over; a new process that does not echo park gets none", async (t) => {
  if (detectRuntime().handoff !== "inherit") return t.skip("with SO_REUSEPORT (Deno) there are no sockets to keep");
  {
    const { h, up } = await toAccepting(5000);
    h.child.exit(0);
    await up;
    assert.equal(h.upgrader.handedOver, true);
    assert.ok(!h.calls.includes("resumeAccepting"));
    h.finishDrain();
  }
  {
    const { h, up } = await toAccepting(5000);
    const t0 = Date.now();
    await h.upgrader.cancel("the server is shutting down");
    await up;
    assert.ok(Date.now() - t0 < 1000, "the shutdown does not wait out the probation");
    assert.equal(h.upgrader.handedOver, true, "the new process accepts: it keeps the service");
    h.finishDrain();
  }
  {
    const { h, up } = await toAccepting(5000, false);
    await up;
    assert.deepEqual(h.calls.slice(0, 1), ["stopAccepting"], "an older new program cannot send sockets back: nothing kept, no probation");
    h.finishDrain();
  }
});
