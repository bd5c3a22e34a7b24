/**
 * An app's ready() and drain() hooks and the handoff between generations
 * (docs/apps.md, "Upgrades"), in-process: `AppHandoff` (what is taken, put,
 * and closed), `AppLifecycle` (the hooks' bounds), how a module's hooks are
 * found, and an embedded server that accepts only once ready() resolved.
 * The upgrade with real processes is test/handoff/app_upgrade.test.ts.
 */
import assert from "node:assert/strict";
import { fstatSync, openSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { test } from "node:test";
import { HandoffError } from "../../src/errors.ts";
import { createLogger, silentLogger } from "../../src/logger.ts";
import type { Handoff } from "../../src/server/app.ts";
import { AppHandoff, MAX_HANDOFF_STATE_BYTES } from "../../src/server/app_handoff.ts";
import { AppLifecycle } from "../../src/server/app_lifecycle.ts";
import { appHooks, loadApp } from "../../src/server/load_app.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { TARGET } from "../../src/target.ts";
import { sleep, tempDir, testServer } from "../helpers/fixtures.ts";

function isOpen(fd: number): boolean {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

function openTemp(name: string): number {
  const file = path.join(tempDir(), name);
  writeFileSync(file, "");
  return openSync(file, "r+");
}

const code = (c: string, re?: RegExp) => (err: unknown): boolean => {
  assert.ok(err instanceof HandoffError, `a HandoffError, got ${String(err)}`);
  assert.equal(err.code, c);
  if (re) assert.match(err.message, re);
  return true;
};

test("take(): each passed descriptor once, by name; after ready() what was not taken is closed and take() finds nothing", () => {
  const a = openTemp("a");
  const b = openTemp("b");
  const h = new AppHandoff({ fds: [{ name: "a", fd: a }, { name: "b", fd: b }] });
  assert.equal(h.take("a"), a);
  assert.equal(h.take("a"), undefined, "taken once");
  assert.equal(h.take("nope"), undefined);
  assert.deepEqual(h.closeUntaken(), ["b"]);
  assert.equal(isOpen(b), false, "the untaken one is closed");
  assert.equal(isOpen(a), true, "the taken one is the app's");
  assert.equal(h.take("b"), undefined);
});

test("put(): names are checked, a closed or standard descriptor is refused, null withdraws; outgoing() resolves servers to their descriptors", async () => {
  const h = new AppHandoff();
  const fd = openTemp("j");
  h.put("journal.v1_x-y", fd);
  assert.throws(() => h.put("a:b", fd), code("PERILINK_HANDOFF", /a name is 1 to 64 of/));
  assert.throws(() => h.put("", fd), code("PERILINK_HANDOFF"));
  assert.throws(() => h.put("x".repeat(65), fd), code("PERILINK_HANDOFF"));
  assert.throws(() => h.put("out", 1), code("PERILINK_HANDOFF", /descriptor 1 is not an open descriptor above 2/));
  assert.throws(() => h.put("closed", 100_000), code("PERILINK_HANDOFF", /^Cannot hand on "closed": descriptor 100000 is not an open descriptor above 2, socket or server \(put\("closed", null\) withdraws one that was closed\)$/));
  h.put("what", "7" as unknown as number); // not a descriptor: refused at the upgrade
  assert.throws(() => h.outgoing(), code("PERILINK_HANDOFF", /"what": it is not an open descriptor/));
  h.put("what", null);
  h.put("gone", null);
  assert.deepEqual(h.outgoing(), [{ name: "journal.v1_x-y", fd }]);
  if (!detectRuntime().canInheritSockets) return; // Deno exposes no socket descriptors (and refuses put() in perilink serve)
  const server = net.createServer();
  h.put("listener", server); // not listening yet: its descriptor is read at the upgrade
  assert.throws(() => h.outgoing(), code("PERILINK_HANDOFF", /"listener": it is not an open descriptor above 2, socket or server/));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  try {
    const out = h.outgoing();
    assert.equal(out.length, 2);
    assert.deepEqual(out[0], { name: "journal.v1_x-y", fd });
    assert.equal(out[1]!.name, "listener");
    assert.ok(Number.isInteger(out[1]!.fd) && out[1]!.fd > 2);
    h.put("listener", null);
    assert.deepEqual(h.outgoing(), [{ name: "journal.v1_x-y", fd }]);
  } finally {
    server.close();
  }
});

test("putState(): a JSON copy taken at once, at most 64 KiB as UTF-8; past it PERILINK_HANDOFF_TOO_LARGE; what is not JSON is refused", () => {
  const h = new AppHandoff();
  const state = { n: 1 };
  h.putState(state);
  state.n = 2;
  assert.equal(h.outgoingState(), '{"n":1}', "a copy");
  const fits = "x".repeat(MAX_HANDOFF_STATE_BYTES - 2); // with its quotes: exactly the bound
  h.putState(fits);
  assert.equal(Buffer.byteLength(h.outgoingState()!), MAX_HANDOFF_STATE_BYTES);
  assert.throws(() => h.putState(`${fits}x`), code("PERILINK_HANDOFF_TOO_LARGE", /^Cannot hand on a state of 65537 bytes as JSON: at most 65536 pass; hand on a file instead$/));
  assert.throws(() => h.putState("é".repeat(MAX_HANDOFF_STATE_BYTES / 2)), code("PERILINK_HANDOFF_TOO_LARGE"), "counted in UTF-8 bytes");
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.throws(() => h.putState(cyclic), code("PERILINK_HANDOFF", /^Cannot hand on a state: it is not JSON$/));
  assert.throws(() => h.putState(() => 1), code("PERILINK_HANDOFF", /not JSON/));
  assert.throws(() => h.putState(10n), code("PERILINK_HANDOFF", /not JSON/));
  assert.equal(Buffer.byteLength(h.outgoingState()!), MAX_HANDOFF_STATE_BYTES, "a refused state leaves the last one");
  h.putState(undefined);
  assert.equal(h.outgoingState(), null, "undefined withdraws it");
});

test("receive(): the previous generation's state, parsed; none, malformed or oversized text is no state", async () => {
  for (const [text, want] of [['{"from":1,"list":[1,2]}', { from: 1, list: [1, 2] }], [null, undefined], ["{oops", undefined], [JSON.stringify("y".repeat(MAX_HANDOFF_STATE_BYTES)), undefined]] as const) {
    const h = new AppHandoff({ state: async () => text });
    assert.equal(h.state(), undefined, "nothing before it is fetched");
    await h.receive();
    assert.deepEqual(h.state(), want);
  }
});

test("a process that cannot pass descriptors refuses put() with the reason; a state still passes unless refused too", () => {
  const h = new AppHandoff({}, { fds: "this runtime cannot pass descriptors to a new process (a state passes)" });
  assert.throws(() => h.put("j", openTemp("j")), code("PERILINK_HANDOFF", /^Cannot hand on "j": this runtime cannot pass descriptors/));
  h.putState({ ok: true });
  assert.equal(h.outgoingState(), '{"ok":true}');
  const w = new AppHandoff({}, { fds: "no", state: "a service process (--workers) hands nothing on" });
  assert.throws(() => w.putState(1), code("PERILINK_HANDOFF", /a service process/));
});

test("AppLifecycle.ready(): resolves after the hook; a rejection or a hook that outlives the timeout is PERILINK_APP_NOT_READY; untaken descriptors are closed either way", async () => {
  const cases: { hook: () => Promise<void>; re: RegExp | null }[] = [
    { hook: async () => {}, re: null },
    { hook: async () => Promise.reject(new Error("disk full")), re: /^Cannot start app t: its ready\(\) failed: disk full$/ },
    { hook: () => new Promise(() => {}), re: /^Cannot start app t: its ready\(\) did not settle within 50 ms \(limits\.readyTimeoutMs\)$/ },
  ];
  for (const c of cases) {
    const fd = openTemp("x");
    const seen: Handoff[] = [];
    const life = new AppLifecycle("t", { ready: (h) => (seen.push(h), c.hook()) }, new AppHandoff({ fds: [{ name: "x", fd }], state: async () => '{"a":1}' }), silentLogger);
    const t0 = Date.now();
    if (c.re) await assert.rejects(life.ready(50), (err: Error & { code?: string }) => err.code === "PERILINK_APP_NOT_READY" && c.re!.test(err.message));
    else await life.ready(50);
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0]!.state(), { a: 1 }, "the state is there when the hook runs");
    assert.equal(isOpen(fd), false, "not taken: closed");
  }
});

test("AppLifecycle.drain(): awaited within its bound, told whether a new generation took over; a failure or a late hook is logged, not thrown", async () => {
  const logs: string[] = [];
  const log = createLogger("debug", (l) => logs.push(l));
  let handedOver: boolean | null = null;
  let finished = false;
  const drain = async (h: Handoff): Promise<void> => {
    handedOver = h.handedOver;
    await sleep(30);
    finished = true;
  };
  const life = new AppLifecycle("t", { drain }, new AppHandoff(), log);
  await life.drain(1000, true);
  assert.equal(handedOver, true);
  assert.equal(finished, true, "awaited");
  const slow = new AppLifecycle("t", { drain: () => new Promise(() => {}) }, new AppHandoff(), log);
  const t0 = Date.now();
  await slow.drain(50, false);
  assert.ok(Date.now() - t0 < 1000);
  assert.match(logs.join(""), /"app_drain_timeout"/);
  await new AppLifecycle("t", { drain: () => Promise.reject(new Error("flush failed")) }, new AppHandoff(), log).drain(50, false);
  assert.match(logs.join(""), /"app_drain_failed".*flush failed/);
});

test("hooks: a session app's methods, a raw module's named exports before its default export's; one that is not a function is PERILINK_APP", async () => {
  const calls: string[] = [];
  const session = { request: () => "x", ready(this: unknown) { calls.push(this === session ? "session ready, as a method" : "wrong this"); } };
  await appHooks("s", [session]).ready!(new AppHandoff());
  const def = { createServer: () => net.createServer(), ready: () => void calls.push("default ready"), drain: () => void calls.push("default drain") };
  const hooks = appHooks("r", [{ ready: () => void calls.push("named ready") }, def]);
  await hooks.ready!(new AppHandoff());
  await hooks.drain!(new AppHandoff());
  assert.deepEqual(calls, ["session ready, as a method", "named ready", "default drain"]);
  assert.throws(() => appHooks("bad", [{ ready: 1 }]), (err: Error & { code?: string }) => err.code === "PERILINK_APP" && /its ready export must be a function/.test(err.message));
  const dir = tempDir();
  const file = path.join(dir, "raw_hooks.mjs");
  writeFileSync(file, 'import net from "node:net";\nexport function createServer() { return net.createServer(); }\nexport async function ready(h) { h.putState({ raw: true }); }\n');
  const loaded = await loadApp(file);
  assert.equal(loaded.kind, "raw");
  const h = new AppHandoff();
  await loaded.hooks!.ready!(h);
  assert.equal(h.outgoingState(), '{"raw":true}');
});

test("an embedded server accepts only once ready() resolved, and drains through drain()", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const events: string[] = [];
  const starting = testServer({
    appObject: {
      request: (p: Uint8Array) => p,
      ready: async () => {
        events.push("ready started");
        await gate;
        events.push("ready done");
      },
      drain: async (h: Handoff) => void events.push(`drain handedOver=${h.handedOver}`),
    },
  });
  await sleep(100);
  assert.deepEqual(events, ["ready started"], "still waiting on ready()");
  release();
  const server = await starting;
  assert.equal(server.accepting, true);
  await server.drain(1000);
  assert.deepEqual(events, ["ready started", "ready done", "drain handedOver=false"]);
  assert.equal(typeof TARGET.server.readyTimeoutMs, "number", "the default comes from the target");
});

test("put(): a descriptor closed and its number given to another file is refused at the upgrade, not passed on as the first; at most 64 names", async () => {
  const { closeSync } = await import("node:fs");
  const h = new AppHandoff();
  const fd = openTemp("first");
  h.put("journal", fd);
  closeSync(fd);
  const other = openTemp("second"); // the kernel gives the lowest free number: the same one
  assert.equal(other, fd);
  assert.throws(() => h.outgoing(), code("PERILINK_HANDOFF", /"journal": descriptor \d+ is another file than the one put/));
  h.put("journal", null);
  for (let i = 0; i < 64; i++) h.put(`n${i}`, other);
  assert.throws(() => h.put("one-more", other), code("PERILINK_HANDOFF", /64 descriptors are handed on already/));
  h.put("n0", other); // a name put again is no new one
  closeSync(other);
});

test("hooks: a session-mode module's named ready/drain exports count when its default export has none", async () => {
  const { toLoadedApp } = await import("../../src/server/load_app.ts");
  const ready = async (): Promise<void> => {};
  const loaded = await toLoadedApp("named", { default: { request: () => "x" }, ready });
  assert.equal(loaded.kind, "session");
  assert.equal(typeof (loaded as { hooks?: { ready?: unknown } }).hooks?.ready, "function");
});
