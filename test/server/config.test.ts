import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { ConfigError } from "../../src/errors.ts";
import { readConfigFile, resolveConfig } from "../../src/server/config.ts";
import { DEFAULT_SERVER_LIMITS } from "../../src/server/limits.ts";
import { parseListenSpec } from "../../src/server/listen_spec.ts";
import { defaultStateDir } from "../../src/runtime/state_dir.ts";
import { TARGET } from "../../src/target.ts";
import { tempDir } from "../helpers/fixtures.ts";

test("parses every listen form: IPv4, bracketed IPv6, IPv6 with an interface zone, auto", () => {
  assert.deepEqual(parseListenSpec("127.0.0.1:1025"), { kind: "address", address: "127.0.0.1", family: 4, port: 1025 });
  assert.deepEqual(parseListenSpec("[::1]:0"), { kind: "address", address: "::1", family: 6, port: 0 });
  assert.deepEqual(parseListenSpec("[fe80::1%eth0]:1025"), { kind: "address", address: "fe80::1%eth0", family: 6, port: 1025 });
  assert.deepEqual(parseListenSpec("auto:1025"), { kind: "auto", port: 1025 });
});

test("rejects bad listen entries with a message that shows the right form", () => {
  for (const bad of ["", "1025", "::1:1025", "localhost:1025", "127.0.0.1:65536", "127.0.0.1:x", "[::1]1025", "[fe80::1%3]:1025", "[zz::1]:1", "auto:"]) {
    assert.throws(() => parseListenSpec(bad), (e: unknown) => e instanceof ConfigError && e.code === "PERILINK_CONFIG" && /Cannot use listen address/.test(e.message), bad);
  }
});

test("fills defaults from the build target's profile", () => {
  const c = resolveConfig({}, { PERILINK_STATE_DIR: "/tmp/x" });
  assert.deepEqual(c.limits, DEFAULT_SERVER_LIMITS);
  assert.equal(c.limits.maxSessions, TARGET.server.maxSessions);
  assert.deepEqual(c.listenText, ["auto:1025"]);
  assert.equal(c.app, "demo");
  assert.equal(c.stateDir, "/tmp/x");
});

test("rejects unknown keys, at the top and inside limits, naming the key", () => {
  assert.throws(() => resolveConfig({ lisen: ["auto:1"] } as never), /unknown key "lisen"/);
  assert.throws(() => resolveConfig({ limits: { maxSesions: 3 } } as never), /unknown key "limits.maxSesions"/);
  assert.throws(() => resolveConfig({ probe: { rate: 3 } } as never), /unknown key "probe.rate"/);
});

test("rejects wrong types and out-of-range limits", () => {
  assert.throws(() => resolveConfig({ limits: { maxSessions: 0 } }), /limits.maxSessions" must be an integer from 1/);
  assert.throws(() => resolveConfig({ limits: { maxFrameBytes: 10 } }), /maxFrameBytes" must be an integer from 1024/);
  assert.throws(() => resolveConfig({ limits: { maxSessionOutputBytes: 100 } }), /maxSessionOutputBytes" must be an integer from 16384/);
  assert.throws(() => resolveConfig({ limits: { maxBufferedBytes: 1000 } }), /maxBufferedBytes" must be an integer from 65536/);
  assert.throws(() => resolveConfig({ limits: { writeTimeoutMs: 0 } }), /writeTimeoutMs" must be an integer from 1/);
  assert.throws(() => resolveConfig({ limits: { requestTimeoutMs: 1.5 } }), /requestTimeoutMs" must be an integer/);
  assert.throws(() => resolveConfig({ probe: { globalBurst: 0 } }), /probe.globalBurst" must be an integer from 1/);
  assert.throws(() => resolveConfig({ listen: [] }), /non-empty list/);
  assert.throws(() => resolveConfig({ logLevel: "loud" as never }), /logLevel/);
  assert.throws(() => resolveConfig({ rescanIntervalMs: -1 }), /rescanIntervalMs/);
});

test("reads a JSON config file and reports parse errors with the file name", async () => {
  const dir = tempDir();
  const good = path.join(dir, "good.json");
  await fs.writeFile(good, JSON.stringify({ listen: ["127.0.0.1:0"], limits: { maxSessions: 8 } }));
  const c = resolveConfig(await readConfigFile(good));
  assert.equal(c.limits.maxSessions, 8);
  const bad = path.join(dir, "bad.json");
  await fs.writeFile(bad, "{ listen: ");
  await assert.rejects(readConfigFile(bad), (e: unknown) => e instanceof ConfigError && e.message.includes("bad.json"));
  await assert.rejects(readConfigFile(path.join(dir, "missing.json")), /Cannot read configuration/);
});

test("picks the state directory from PERILINK_STATE_DIR, then root's /var/lib, then XDG_STATE_HOME", () => {
  assert.equal(defaultStateDir({ PERILINK_STATE_DIR: "/srv/p" }), "/srv/p");
  const isRoot = process.getuid?.() === 0;
  assert.equal(defaultStateDir({ XDG_STATE_HOME: "/home/u/.state" }), isRoot ? "/var/lib/perilink" : "/home/u/.state/perilink");
});

test("a ConfigError on state directories that are files", async () => {
  const dir = tempDir();
  const file = path.join(dir, "not-a-dir");
  await fs.writeFile(file, "");
  const { startServer } = await import("../../src/server/start_server.ts");
  await assert.rejects(startServer({ listen: ["127.0.0.1:0"], stateDir: file, logger: (await import("../../src/logger.ts")).silentLogger }), ConfigError);
});

test("workers: a count, auto (the cores) or MIN..MAX; dispatch manager (default) or semaphore; the rest is a ConfigError", () => {
  const w = (workers: unknown, cores = 4): unknown => resolveConfig({ workers: workers as number }, {}, cores).workers;
  assert.deepEqual(resolveConfig({}, {}, 4).workers, { min: 1, max: 1 }, "one process, no manager, by default");
  assert.deepEqual(w(3), { min: 3, max: 3 });
  assert.deepEqual(w("2"), { min: 2, max: 2 });
  assert.deepEqual(w("auto", 4), { min: 4, max: 4 });
  assert.deepEqual(w("1..auto", 6), { min: 1, max: 6 });
  assert.deepEqual(w("2..5"), { min: 2, max: 5 });
  for (const bad of [0, -1, 1.5, "x", "5..2", "1..2..3", "", true, 10_000]) {
    assert.throws(() => w(bad), (e: unknown) => e instanceof ConfigError && /"workers"/.test(e.message), `workers ${JSON.stringify(bad)}`);
  }
  assert.equal(resolveConfig({}, {}).dispatch, "manager");
  assert.equal(resolveConfig({ dispatch: "semaphore" }, {}).dispatch, "semaphore");
  assert.throws(() => resolveConfig({ dispatch: "round-robin" as "manager" }, {}), /"dispatch" must be "manager" or "semaphore"/);
  assert.throws(() => resolveConfig({ workerSlots: 0 }, {}), /"workerSlots" must be an integer from 1/);
  assert.throws(() => resolveConfig({ workerIdleMs: 5 }, {}), /"workerIdleMs" must be an integer from 100/);
});

test("a millisecond option past what a timer can wait (2^31−1 ms) is a PERILINK_CONFIG error that names the range", () => {
  // Timers fire a longer delay after 1 ms: drainTimeoutMs 3e9 would cut every request in flight at once.
  for (const key of ["drainTimeoutMs", "rescanIntervalMs", "workerIdleMs", "probationMs"] as const) {
    assert.throws(
      () => resolveConfig({ [key]: 3e9 }),
      (err: unknown) => err instanceof ConfigError && err.code === "PERILINK_CONFIG" && err.message.includes(`"${key}"`) && err.message.includes("2147483647"),
    );
    assert.throws(() => resolveConfig({ [key]: 2.5 }), /must be an integer from/);
  }
  for (const key of ["handshakeTimeoutMs", "idleTimeoutMs", "writeTimeoutMs", "requestTimeoutMs", "readyTimeoutMs"] as const) {
    assert.throws(() => resolveConfig({ limits: { [key]: 2 ** 31 } }), /from 1 to 2147483647/);
  }
  assert.equal(resolveConfig({ drainTimeoutMs: 0x7fffffff }).drainTimeoutMs, 0x7fffffff);
});

test("an upgrade's probation and an app's ready() timeout: defaults (the latter from the target), 0 turns the probation off", () => {
  const c = resolveConfig({}, {});
  assert.equal(c.probationMs, 1000);
  assert.equal(c.limits.readyTimeoutMs, TARGET.server.readyTimeoutMs);
  assert.equal(resolveConfig({ probationMs: 0 }, {}).probationMs, 0);
  assert.throws(() => resolveConfig({ probationMs: -1 }, {}), /"probationMs" must be an integer from 0/);
  assert.throws(() => resolveConfig({ limits: { readyTimeoutMs: 0 } }, {}), /"limits.readyTimeoutMs" must be an integer from 1/);
});
