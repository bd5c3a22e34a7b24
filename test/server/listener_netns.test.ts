/**
 * S2 in a real network namespace: a `perilink serve --listen auto:0`
 * runs inside a namespace of its own, joined to the test's namespace by a
 * veth pair. Addresses are added to and removed from the namespace's side
 * and the server's listeners must follow (seen through the control socket,
 * a file, so reachable from here), answer identify over UDP and TCP, and,
 * for a link-local address, a session opened with the zone of our side.
 *
 * Needs root and `ip netns`; skips otherwise. Traffic goes only to addresses
 * inside the namespace (a per-run fd77:XXXX::/64 prefix and link-local on
 * the veth). The namespace and veth are removed in `after()`.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { identifyTcp, identifyUdp } from "../../src/client/identify.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { controlRequest } from "../../src/server/control_server.ts";
import type { ServerStatus } from "../../src/server/server.ts";
import { spawnCli, stopChild } from "../helpers/cli.ts";
import { tempDir, waitFor } from "../helpers/fixtures.ts";

/** `auto:0`: the kernel picks the port at the first bind and every address shares it; set once started. */
let port = 0;
const RESCAN_MS = 200;
const WAIT_MS = 10_000;
const START_WAIT_MS = 30_000; // first start of the CLI may compile (tsx, deno)

// Unique per run; interface names stay ≤ 15 characters ("plk" + ≤5 + 4 + 1).
const RUN_ID = `${process.pid.toString(36)}${randomBytes(2).toString("hex")}`;
const NS = `plk${RUN_ID}`;
const HOST_IF = `plk${RUN_ID}h`; // stays in our namespace
const NS_IF = `plk${RUN_ID}n`; // moved into NS
// A per-run fd77:XXXX::/64 (not used on this machine), written as the kernel lists it: no leading zeros.
const NET = `fd77:${(randomBytes(2).readUInt16BE(0) | 0x1000).toString(16)}:`;
const NS_GLOBAL = `${NET}:1`;
const HOST_GLOBAL = `${NET}:2`;
const NS_LINK_LOCAL = "fe80::77:1";
const HOST_LINK_LOCAL = "fe80::77:2";

const SKIP = "needs root and ip netns";

// Registered first so the server stops before its state directory is removed.
after(cleanup);

// Made here, not in before(): tempDir() registers its removal with after(), which must be file-level.
const STATE_DIR = tempDir("perilink-netns-");
const CONFIG_DIR = tempDir("perilink-netns-cfg-");

/** Runs `ip ARGS` (bounded); rejects with its stderr. */
function ip(args: string[], timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("ip", args, { timeout: timeoutMs, killSignal: "SIGKILL" }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ip ${args.join(" ")}: ${String(stderr).trim() || err.message}`, { cause: err }));
      else resolve(String(stdout));
    });
  });
}

interface Env {
  server: ChildProcess;
  stateDir: string;
  log: () => string;
}

let env: Env | null = null;
let skipReason: string | null = null;
let setupError: unknown = null;
let nsCreated = false;
let vethCreated = false;
let server: ChildProcess | null = null;

/** The environment, or null after skipping `t`; throws when setup failed. */
function ready(t: { skip(message?: string): void }): Env | null {
  if (setupError) throw setupError;
  if (!env) {
    t.skip(skipReason ?? SKIP);
    return null;
  }
  return env;
}

async function status(e: Env): Promise<ServerStatus | null> {
  if (e.server.exitCode !== null || e.server.signalCode !== null) {
    throw new Error(`perilink serve exited (${e.server.exitCode ?? e.server.signalCode}):\n${e.log()}`);
  }
  return (await controlRequest(e.stateDir, { op: "status" }, 2000).catch(() => null)) as ServerStatus | null;
}

const addresses = (s: ServerStatus): Set<string> => new Set(s.listeners.map((l) => l.address));

/** Polls the status until `pred` holds; returns that status. */
async function waitStatus(e: Env, pred: (s: ServerStatus) => boolean, what: string, timeoutMs = WAIT_MS): Promise<ServerStatus> {
  let last: ServerStatus | null = null;
  try {
    await waitFor(async () => {
      last = await status(e);
      return last !== null && pred(last);
    }, what, timeoutMs);
  } catch (err) {
    const seen = last === null ? "no status" : JSON.stringify((last as ServerStatus).listeners);
    throw new Error(`${(err as Error).message}; last listeners: ${seen}\nserver log:\n${e.log()}`);
  }
  return last!;
}

/** Every listed address×port has exactly a TCP and a UDP listener, all on port. */
function assertTcpAndUdp(s: ServerStatus): void {
  const by = new Map<string, string[]>();
  for (const l of s.listeners) {
    assert.equal(l.port, port, `listener ${l.address} on port ${l.port}, not the entry's port ${port}`);
    const k = `${l.address}|${l.port}`;
    by.set(k, [...(by.get(k) ?? []), l.transport]);
  }
  assert.ok(by.size > 0, "no listeners");
  for (const [k, transports] of by) assert.deepEqual(transports.sort(), ["tcp", "udp"], `transports of ${k}`);
}

async function setup(): Promise<void> {
  if (process.platform !== "linux" || typeof process.getuid !== "function" || process.getuid() !== 0) {
    skipReason = `${SKIP}: not running as root on Linux`;
    return;
  }
  try {
    await ip(["-V"]);
  } catch (err) {
    skipReason = `${SKIP}: cannot run ip (${(err as Error).message})`;
    return;
  }
  try {
    await ip(["netns", "add", NS]);
    nsCreated = true;
  } catch (err) {
    skipReason = `${SKIP}: ${(err as Error).message}`;
    return;
  }
  try {
    await ip(["link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF]);
    vethCreated = true;
  } catch (err) {
    skipReason = `${SKIP}: cannot create a veth pair (${(err as Error).message})`;
    return;
  }
  // No autoconfigured link-local addresses: the test sets its own, without DAD, so nothing is tentative.
  await ip(["link", "set", HOST_IF, "addrgenmode", "none"]);
  await ip(["link", "set", NS_IF, "netns", NS]);
  await ip(["-n", NS, "link", "set", NS_IF, "addrgenmode", "none"]);
  await ip(["-n", NS, "link", "set", "lo", "up"]);
  await ip(["-n", NS, "link", "set", NS_IF, "up"]);
  await ip(["link", "set", HOST_IF, "up"]);
  await ip(["-6", "addr", "add", `${HOST_LINK_LOCAL}/64`, "dev", HOST_IF, "nodad"]);
  await ip(["-6", "addr", "add", `${HOST_GLOBAL}/64`, "dev", HOST_IF, "nodad"]);

  const stateDir = STATE_DIR;
  const config = path.join(CONFIG_DIR, "config.json");
  writeFileSync(config, JSON.stringify({ rescanIntervalMs: RESCAN_MS, drainTimeoutMs: 1000 }));
  const child = spawnCli(
    ["serve", "--access", "open", "--listen", "auto:0", "--state-dir", stateDir, "--config", config, "--log-level", "debug"],
    { prefix: ["ip", "netns", "exec", NS] },
  );
  server = child;
  let log = "";
  const keep = (s: string): void => {
    log += s; // a few kB: debug lines for a handful of listeners, probes and sessions
  };
  child.stdout?.setEncoding("utf8").on("data", keep);
  child.stderr?.setEncoding("utf8").on("data", keep);
  child.on("error", (err) => keep(`spawn error: ${err.message}\n`));
  const e: Env = { server: child, stateDir, log: () => log };
  // Ready once it listens on the namespace's loopback (the veth has no address yet).
  const s = await waitStatus(e, (st) => st.accepting && addresses(st).has("::1"), "the server to start in the namespace", START_WAIT_MS);
  port = s.listeners[0]?.port ?? 0;
  assert.ok(port > 0, "the kernel chose a port");
  assertTcpAndUdp(s);
  env = e;
}

before(async () => {
  try {
    await setup();
  } catch (err) {
    setupError = err;
  }
});

/** Removes the veth pair and the namespace; reports (does not throw) what could not be removed. */
async function cleanup(): Promise<void> {
  if (server) await stopChild(server, 5000);
  // Deleting either end removes the pair; the host end first, so it is gone at once.
  if (vethCreated) {
    await ip(["link", "del", HOST_IF]).catch((err: Error) => console.error(`cleanup: ${err.message}`));
    vethCreated = false;
  }
  if (nsCreated) {
    await ip(["netns", "del", NS]).catch((err: Error) => console.error(`cleanup: ${err.message}`));
    nsCreated = false;
  }
}

// If the file ends without its after() hooks (an uncaught error, process.exit), still clean up.
process.once("exit", () => {
  if (server && server.exitCode === null && server.signalCode === null) server.kill("SIGKILL");
  if (vethCreated) spawnSync("ip", ["link", "del", HOST_IF], { timeout: 5000, stdio: "ignore" });
  if (nsCreated) spawnSync("ip", ["netns", "del", NS], { timeout: 5000, stdio: "ignore" });
});

test("auto: a global address added in the namespace gets TCP and UDP listeners that identify", async (t) => {
  const e = ready(t);
  if (!e) return;
  await ip(["-n", NS, "-6", "addr", "add", `${NS_GLOBAL}/64`, "dev", NS_IF, "nodad"]);
  const s = await waitStatus(e, (st) => addresses(st).has(NS_GLOBAL), `a listener on ${NS_GLOBAL}`);
  assertTcpAndUdp(s);
  assert.ok(addresses(s).has("127.0.0.1") && addresses(s).has("::1"), "loopback listeners stay");
  assert.match(s.runtime, new RegExp(`^${detectRuntime().name} `), "the CLI runs on the test's runtime");

  const udp = await identifyUdp(NS_GLOBAL, port, { timeoutMs: 3000 });
  assert.equal(udp.serverId, s.serverId);
  assert.equal(udp.keyFingerprint, s.keyFingerprint);
  assert.equal(udp.transport, "udp");
  const tcp = await identifyTcp(NS_GLOBAL, port, { timeoutMs: 3000 });
  assert.equal(tcp.serverId, s.serverId);
  assert.equal(tcp.keyFingerprint, s.keyFingerprint);
  assert.equal(tcp.transport, "tcp");
});

test("auto: a link-local address gets a listener reached with the peer's zone", async (t) => {
  // Skipped from inside, not with the `skip` option: on Deno a test skipped by
  // option keeps the file's after() hooks from running (and the namespace would stay).
  if (!detectRuntime().canListenLinkLocal) {
    t.skip(`${detectRuntime().name} cannot listen on link-local addresses`);
    return;
  }
  const e = ready(t);
  if (!e) return;
  await ip(["-n", NS, "-6", "addr", "add", `${NS_LINK_LOCAL}/64`, "dev", NS_IF, "nodad"]);
  // The server lists it with its own zone; we reach it through ours.
  const listed = `${NS_LINK_LOCAL}%${NS_IF}`;
  const s = await waitStatus(e, (st) => addresses(st).has(listed), `a listener on ${listed}`);
  assertTcpAndUdp(s);

  const zoned = `${NS_LINK_LOCAL}%${HOST_IF}`;
  const udp = await identifyUdp(zoned, port, { timeoutMs: 3000 });
  assert.equal(udp.serverId, s.serverId);
  assert.equal(udp.address, zoned);
  const tcp = await identifyTcp(`[${zoned}]`, port, { timeoutMs: 3000 });
  assert.equal(tcp.serverId, s.serverId);

  const session = await ClientSession.connect({ host: zoned, port, timeoutMs: 3000, requestTimeoutMs: 3000 });
  try {
    assert.equal(session.serverId, s.serverId);
    const ch = await session.openChannel("test");
    assert.equal((await ch.request("hello")).toString(), "hello");
    const info = JSON.parse((await ch.request("info")).toString()) as { serverId: string; pid: number };
    assert.equal(info.serverId, s.serverId);
    assert.equal(info.pid, s.pid);
  } finally {
    await Promise.race([session.close(), new Promise((r) => setTimeout(r, 2000))]);
    session.destroy();
  }
});

test("auto: an address removed from the namespace loses its listener", async (t) => {
  const e = ready(t);
  if (!e) return;
  // Idempotent: present whether or not the first test got that far.
  await ip(["-n", NS, "-6", "addr", "replace", `${NS_GLOBAL}/64`, "dev", NS_IF, "nodad"]);
  const had = await waitStatus(e, (st) => addresses(st).has(NS_GLOBAL), `a listener on ${NS_GLOBAL}`);

  await ip(["-n", NS, "-6", "addr", "del", `${NS_GLOBAL}/64`, "dev", NS_IF]);
  const s = await waitStatus(e, (st) => !addresses(st).has(NS_GLOBAL), `the listener on ${NS_GLOBAL} to go`);
  assertTcpAndUdp(s);
  // Only that one went.
  const expected = [...addresses(had)].filter((a) => a !== NS_GLOBAL).sort();
  assert.deepEqual([...addresses(s)].sort(), expected);
  await assert.rejects(identifyUdp(NS_GLOBAL, port, { timeoutMs: 300, attempts: 2 }), { code: "PERILINK_PROBE_TIMEOUT" });
  // The server's log tells the same story: that one listener removed, no other (none re-bound on another port).
  const removed = (): string[] =>
    e
      .log()
      .split("\n")
      .filter((line) => line.includes('"listener_removed"'))
      .map((line) => {
        const r = JSON.parse(line) as { address: string; port: number };
        return `${r.address}|${r.port}`;
      });
  await waitFor(() => removed().length > 0, "a listener_removed log line", WAIT_MS);
  assert.deepEqual(removed(), [`${NS_GLOBAL}|${port}`]);
  // The others still answer, e.g. the link-local one when the runtime listens there.
  if (addresses(s).has(`${NS_LINK_LOCAL}%${NS_IF}`)) {
    const udp = await identifyUdp(`${NS_LINK_LOCAL}%${HOST_IF}`, port, { timeoutMs: 3000 });
    assert.equal(udp.serverId, s.serverId);
  }
});
