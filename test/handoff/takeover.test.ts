/**
 * The new side of a handoff (`Takeover`, `readStartContext`,
 * `takeInheritedSockets`) through its seams: a fake parent channel, a fake
 * accept semaphore, a fake liveness check and plain environment objects. No
 * process is started. The real processes are in handoff_faults.test.ts.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { test } from "node:test";
import { createLogger } from "../../src/logger.ts";
import { DEFAULT_UPGRADE_TIMEOUT_MS, type DrainingGeneration, type NewToOld } from "../../src/handoff/handoff_protocol.ts";
import { takeInheritedSockets } from "../../src/handoff/inherited_sockets.ts";
import { readStartContext, Takeover, type ParentChannel } from "../../src/handoff/takeover.ts";
import { sleep, waitFor } from "../helpers/fixtures.ts";

/** The old process as the new one sees it over the IPC channel. */
class FakeParent extends EventEmitter {
  connected = true;
  unrefed = false;
  readonly received: NewToOld[] = [];
  readonly channel = { unref: (): void => void (this.unrefed = true), ref: (): void => {} };

  send(msg: NewToOld, cb?: (err: Error | null) => void): boolean {
    this.received.push(msg);
    cb?.(null);
    return true;
  }
  /** The old process says something. */
  say(msg: unknown): void {
    setImmediate(() => this.emit("message", msg));
  }
  /** The old process is gone: its end of the pipe closed. */
  die(): void {
    this.connected = false;
    setImmediate(() => this.emit("disconnect"));
  }
}

function setup(timeoutMs = 2000, alive: Set<number> = new Set()) {
  const parent = new FakeParent();
  const logs: string[] = [];
  const order: string[] = [];
  const takeover = new Takeover(parent as unknown as ParentChannel, createLogger("debug", (l) => logs.push(l)), timeoutMs, {
    isAlive: (pid) => alive.has(pid),
  });
  const semaphore = {
    acquire: async (ms?: number): Promise<void> => {
      order.push(`acquire ${ms}`);
    },
  };
  const activate = async (): Promise<void> => {
    order.push("activate");
  };
  return { parent, logs, order, takeover, semaphore, activate, alive };
}

const gen = (generation: number, pid: number, inflight = 1): DrainingGeneration => ({ generation, pid, inflight, sessions: 1 });

test("success: asks for the service, and only after the answer and the semaphore starts accepting and says so", async () => {
  const { parent, order, takeover, semaphore, activate } = setup();
  const run = takeover.run(semaphore, activate, 7);
  await waitFor(() => parent.received.length === 1, "the transfer request");
  assert.deepEqual(parent.received[0], { t: "transfer-request", park: true }, "it says it sends parked sockets back");
  await sleep(20);
  assert.deepEqual(order, ["acquire 2000"], "the wait for the semaphore runs, nothing accepts before the old process answers");
  parent.say({ t: "transfer-response" });
  await run;
  assert.deepEqual(order, ["acquire 2000", "activate"], "the semaphore first, then accepting");
  assert.deepEqual(parent.received[1], { t: "accepting", pid: process.pid, generation: 7 });
  assert.equal(parent.unrefed, true, "the pipe no longer keeps the process alive");
});

test("the wait for the accept semaphore starts with the transfer request, before any answer, so no process start lies between the old process stopping and the new one accepting", async () => {
  const { parent, takeover } = setup();
  const events: string[] = [];
  let grant!: () => void;
  const granted = new Promise<void>((resolve) => (grant = resolve));
  const semaphore = {
    // Like the flock: the wait is in the kernel and ends when the old process releases the lock.
    acquire: async (): Promise<void> => {
      events.push(`acquire started, ${parent.received.length} message(s) sent`);
      await granted;
      events.push("acquired");
    },
  };
  const run = takeover.run(semaphore, async () => void events.push("activate"), 4);
  await waitFor(() => parent.received.length === 1, "the transfer request");
  assert.deepEqual(events, ["acquire started, 1 message(s) sent"], "waiting as soon as it asked for the service");
  // The old process stops accepting, releases the semaphore, then answers.
  grant();
  await sleep(10);
  assert.deepEqual(events, ["acquire started, 1 message(s) sent", "acquired"], "holding the semaphore is not yet accepting");
  parent.say({ t: "transfer-response" });
  await run;
  assert.deepEqual(events, ["acquire started, 1 message(s) sent", "acquired", "activate"]);
});

test("a takeover that fails after it took the semaphore gives it back", async () => {
  const { takeover, activate } = setup(60);
  const order: string[] = [];
  const semaphore = {
    acquire: async (): Promise<void> => void order.push("acquire"),
    release: (): void => void order.push("release"),
  };
  await assert.rejects(takeover.run(semaphore, activate, 2), /did not answer the transfer request within 60 ms/);
  assert.deepEqual(order, ["acquire", "release"]);
});

test("the parent going away before it answers: the new process takes over anyway and says why", async () => {
  const { parent, logs, order, takeover, semaphore, activate } = setup();
  const run = takeover.run(semaphore, activate, 2);
  await waitFor(() => parent.received.length === 1, "the transfer request");
  parent.die();
  await run;
  assert.deepEqual(order, ["acquire 2000", "activate"]);
  assert.match(logs.join(""), /"takeover_parent_gone"/);
  assert.equal(parent.received.length, 1, "nothing sent to a parent that is gone");
});

test("a parent that neither answers nor goes away: run() throws at the timeout without accepting", async () => {
  const { order, takeover, semaphore, activate } = setup(80);
  const t0 = Date.now();
  await assert.rejects(takeover.run(semaphore, activate, 2), /^Error: Cannot take over: the running process did not answer the transfer request within 80 ms$/);
  assert.ok(Date.now() - t0 >= 80);
  assert.deepEqual(order, ["acquire 80"], "waited for the semaphore, never accepted");
});

test("drain reports: each one replaces the last, drained generations and exited processes are dropped", async () => {
  const alive = new Set([101, 102]);
  const { parent, takeover, semaphore, activate } = setup(2000, alive);
  const run = takeover.run(semaphore, activate, 3);
  parent.say({ t: "transfer-response" });
  await run;
  assert.deepEqual(takeover.draining(), []);
  parent.say({ t: "draining", report: gen(2, 102, 5), older: [gen(1, 101, 2)] });
  await sleep(5);
  assert.deepEqual(takeover.draining(), [gen(1, 101, 2), gen(2, 102, 5)], "the parent and the generation it still hears from, oldest first");
  // Generation 1 finished: the parent's next report no longer carries it.
  parent.say({ t: "draining", report: gen(2, 102, 4), older: [] });
  await sleep(5);
  assert.deepEqual(takeover.draining(), [gen(2, 102, 4)], "a report replaces the last one");
  // An older generation the parent reported, whose process then exits before the parent reports again.
  parent.say({ t: "draining", report: gen(2, 102, 3), older: [gen(1, 101, 1)] });
  await sleep(5);
  alive.delete(101);
  assert.deepEqual(takeover.draining(), [gen(2, 102, 3)], "an exited process is never listed");
  parent.say({ t: "drained", generation: 2 });
  await sleep(5);
  assert.deepEqual(takeover.draining(), []);
});

test("a parent that goes away while an older generation still drains: that one stays listed while its process runs", async () => {
  const alive = new Set([101, 102]);
  const { parent, takeover, semaphore, activate } = setup(2000, alive);
  const run = takeover.run(semaphore, activate, 3);
  parent.say({ t: "transfer-response" });
  await run;
  parent.say({ t: "draining", report: gen(2, 102), older: [gen(1, 101)] });
  await sleep(5);
  alive.delete(102);
  parent.say({ t: "drained", generation: 2 });
  parent.die();
  await sleep(5);
  assert.deepEqual(takeover.draining(), [gen(1, 101)]);
  alive.delete(101);
  assert.deepEqual(takeover.draining(), []);
});

test("readStartContext: a handoff only with a perilink parent's variables and an IPC channel; the variables are removed", () => {
  const channel = new FakeParent() as unknown as ParentChannel;
  const env: NodeJS.ProcessEnv = {
    PERILINK_HANDOFF: "inherit",
    PERILINK_GENERATION: "5",
    PERILINK_HANDOFF_TIMEOUT_MS: "1234",
    PERILINK_PORTS: JSON.stringify({ "127.0.0.1:0": 40000, "[::1]:0": 70000, bad: "x" }),
    PERILINK_APP_STATE: "1",
    PERILINK_DRAINING_PIDS: "4001,x,1,-3,4002",
    OTHER: "kept",
  };
  assert.deepEqual(readStartContext(env, channel), { handoff: "inherit", generation: 5, timeoutMs: 1234, ports: { "127.0.0.1:0": 40000 }, appState: true, drainingPids: [4001, 4002] });
  assert.deepEqual(env, { OTHER: "kept" }, "not passed on to processes started later");

  const noChannel = { on: () => {} } as unknown as ParentChannel;
  assert.deepEqual(readStartContext({ PERILINK_HANDOFF: "reuseport", PERILINK_GENERATION: "2" }, noChannel), {
    handoff: null,
    generation: 2,
    timeoutMs: DEFAULT_UPGRADE_TIMEOUT_MS,
    ports: {},
    appState: false,
    drainingPids: [],
  });
  assert.deepEqual(readStartContext({ PERILINK_GENERATION: "-1", PERILINK_PORTS: "{not json", PERILINK_APP_STATE: "1" }, channel), {
    handoff: null,
    generation: 1,
    timeoutMs: DEFAULT_UPGRADE_TIMEOUT_MS,
    ports: {},
    appState: false,
    drainingPids: [],
  });
  assert.equal(readStartContext({ PERILINK_HANDOFF: "inherit" }, channel).appState, false, "a parent that does not say it answers is not asked");
});

test("takeInheritedSockets: named sockets from fd 3, then the app's descriptors (app@NAME), unnamed ones reported, none for another process; the variables are removed", () => {
  const env: NodeJS.ProcessEnv = { LISTEN_FDS: "5", LISTEN_FDNAMES: "tcp@127.0.0.1@1025:udp@%3A%3A1@1025:app@journal:stray:app@", LISTEN_PID: "4242" };
  assert.deepEqual(takeInheritedSockets(env, 4242), {
    sockets: [
      { fd: 3, transport: "tcp", address: "127.0.0.1", port: 1025 },
      { fd: 4, transport: "udp", address: "::1", port: 1025 },
    ],
    app: [{ name: "journal", fd: 5 }],
    unknown: [6, 7],
  });
  assert.deepEqual(env, {});
  const none = { sockets: [], app: [], unknown: [] };
  assert.deepEqual(takeInheritedSockets({ LISTEN_FDS: "1", LISTEN_FDNAMES: "tcp@127.0.0.1@1025", LISTEN_PID: "1" }, 4242), none);
  assert.deepEqual(takeInheritedSockets({ LISTEN_FDS: "lots" }, 4242), none);
});

test("appState(): asks the old process once and waits for its answer; null without a parent that answers, on its death, or at the timeout", async () => {
  {
    const { parent, takeover } = setup();
    const asked = takeover.appState(true);
    await waitFor(() => parent.received.length === 1, "the request");
    assert.deepEqual(parent.received[0], { t: "app-state-request" });
    parent.say({ t: "draining", report: gen(1, 1), older: [] }); // not the answer
    parent.say({ t: "app-state", state: '{"n":1}' });
    assert.equal(await asked, '{"n":1}');
  }
  {
    const { parent, takeover } = setup();
    assert.equal(await takeover.appState(false), null, "an older parent: not asked");
    assert.deepEqual(parent.received, []);
  }
  {
    const { parent, takeover } = setup();
    const asked = takeover.appState(true);
    parent.die();
    assert.equal(await asked, null);
  }
  {
    const { takeover, logs } = setup(50);
    assert.equal(await takeover.appState(true), null);
    assert.match(logs.join(""), /"app_state_timeout"/);
  }
});

test("appStates(): an old group's states by slot (what is not text counts as none); an old single process's answer has no states", async () => {
  {
    const { parent, takeover } = setup();
    const asked = takeover.appStates(true);
    await waitFor(() => parent.received.length === 1, "the request");
    parent.say({ t: "app-state", state: '{"s":0}', states: ['{"s":0}', null, 7, '{"s":3}'] } as never);
    assert.deepEqual(await asked, { state: '{"s":0}', states: ['{"s":0}', null, null, '{"s":3}'] });
  }
  {
    const { parent, takeover } = setup();
    const asked = takeover.appStates(true);
    await waitFor(() => parent.received.length === 1, "the request");
    parent.say({ t: "app-state", state: '{"one":1}' });
    assert.deepEqual(await asked, { state: '{"one":1}' });
  }
  {
    const { parent, takeover } = setup();
    const asked = takeover.appStates(true);
    await waitFor(() => parent.received.length === 1, "the request");
    parent.say({ t: "app-state", state: null, states: Array.from({ length: 5000 }, () => "{}") });
    assert.equal((await asked).states?.length, 256, "at most as many slots as a group may have (256) are kept");
  }
});

test("failed(): tells the old process why this one cannot start, with the error's code when it has one", async () => {
  const { parent, takeover } = setup();
  await takeover.failed("Cannot start app a: its ready() failed: no", "PERILINK_APP_NOT_READY");
  await takeover.failed("Cannot start: a plain error");
  assert.deepEqual(parent.received, [
    { t: "start-failed", why: "Cannot start app a: its ready() failed: no", code: "PERILINK_APP_NOT_READY" },
    { t: "start-failed", why: "Cannot start: a plain error" },
  ]);
  parent.connected = false;
  await takeover.failed("again"); // nobody to tell: at once
  assert.equal(parent.received.length, 2);
});

test("park: the old process's listening socket comes back with the same handle, and this process's copy closes once it is sent", async () => {
  const { parent, takeover, semaphore, activate } = setup();
  const sent: { msg: unknown; handle: unknown }[] = [];
  parent.send = ((msg: NewToOld, handle?: unknown, cb?: unknown): boolean => {
    parent.received.push(msg);
    sent.push({ msg, handle: typeof handle === "function" ? undefined : handle });
    (typeof handle === "function" ? handle : (cb as (() => void) | undefined))?.();
    return true;
  }) as typeof parent.send;
  const run = takeover.run(semaphore, activate, 2);
  let closed = 0;
  const handle = { fd: 99, close: (): void => void closed++ };
  setImmediate(() => parent.emit("message", { t: "park" }, handle));
  await waitFor(() => sent.some((s) => (s.msg as NewToOld).t === "parked"), "the handle sent back");
  const back = sent.find((s) => (s.msg as NewToOld).t === "parked")!;
  assert.equal(back.handle, handle, "the very handle it got");
  assert.equal(closed, 1, "its copy is closed once sent");
  parent.emit("message", { t: "park" }); // no handle: nothing to send back
  await sleep(5);
  assert.equal(sent.filter((s) => (s.msg as NewToOld).t === "parked").length, 1);
  parent.say({ t: "transfer-response" });
  await run;
});
