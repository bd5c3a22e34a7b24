/**
 * Seamless replacement (S4) when things go wrong, against real `perilink
 * serve` processes: every fault below runs under a light continuous load (4
 * client sessions sending echo requests, and one client opening a fresh
 * session per request), and the load must see no error other than the
 * retry-safe ones (a request refused after GOAWAY, which was never started,
 * is sent again on a new session) and, where a process is killed or a
 * rollback drops the listen queue, the loss of what began before that.
 * Afterwards `status` must show the expected generation and the same server
 * identifier. (Status is read over the control socket in-process, as
 * `perilink status --json` does, to poll quickly; one test also runs the CLI.)
 *
 * Linux only (processes are found through /proc). On Node.js the listening
 * sockets are handed over; Deno cannot do that and binds the ports again with
 * SO_REUSEPORT, which needs net.ipv4.tcp_migrate_req=1 (set for the file when
 * we are root, else every test skips: from inside the body, since on Deno the
 * `skip` option keeps after() hooks from running).
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, test } from "node:test";
import { ClientSession, type ClientChannel } from "../../src/client/client_session.ts";
import { RequestRefusedError, SessionClosedError } from "../../src/errors.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { controlRequest } from "../../src/server/control_server.ts";
import type { ServerStatus } from "../../src/server/server.ts";
import { freeTcpUdpPort } from "../helpers/free_port.ts";
import { skipUnlessHandoff } from "../helpers/migration.ts";
import { REPO_ROOT, runCli, spawnCli, stopChild, type CliResult } from "../helpers/cli.ts";
import { sleep, tempDir, waitFor } from "../helpers/fixtures.ts";

/** First start of a tsx child compiles; later ones take ~0.5–1 s. */
const START_MS = 20_000;
/** How long the slow app module makes a new process wait before it is ready. */
const SLOW_APP_MS = 3000;

/** Echoes, and answers "sleep:MS:…" after MS ms (a request still running during a drain). */
const RECORDING_APP = path.join(REPO_ROOT, "test/fixtures/recording_app.ts");

/** True when the test must skip (see test/helpers/migration.ts). */
const skipped = skipUnlessHandoff;

// ---------------------------------------------------------------- processes

/** Whether `pid` runs (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true; // no procfs: kill(0) is all we know
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Ends every pid: SIGTERM, then SIGKILL after `graceMs`. */
async function killAll(pids: Iterable<number>, graceMs = 3000): Promise<void> {
  const live = [...pids].filter((p) => p !== process.pid && alive(p));
  for (const p of live) signal(p, "SIGTERM");
  const end = Date.now() + graceMs;
  while (Date.now() < end && live.some(alive)) await sleep(25);
  for (const p of live) if (alive(p)) signal(p, "SIGKILL");
}

/** Pids of the processes whose command line mentions `text` (Linux /proc). */
function pidsMentioning(text: string): number[] {
  const out: number[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, "utf8").includes(text) && alive(Number(e))) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * Every server child, every server pid learned from `status`, and every state
 * directory (each generation has it on its command line), ended after the file.
 */
const children = new Set<ChildProcess>();
const serverPids = new Set<number>();
const stateDirs = new Set<string>();
after(async () => {
  // A new generation is a child of the old one, not ours: end those processes too.
  await killAll([...serverPids, ...[...stateDirs].flatMap(pidsMentioning)]);
  await Promise.all([...children].map((c) => stopChild(c, 2000)));
  // A process we could not end must not keep this file running through our pipes.
  for (const c of children) {
    c.stdout?.destroy();
    c.stderr?.destroy();
  }
});

// ------------------------------------------------------------------- server

interface Server {
  stateDir: string;
  /** The first generation (our direct child). */
  child: ChildProcess;
  /** TCP port of the first listener. */
  port: number;
  /** Log lines (stderr) of every generation: a new one inherits the old one's stderr. */
  log(): string;
  status(): Promise<ServerStatus>;
  waitStatus(cond: (s: ServerStatus) => boolean, what: string, timeoutMs?: number): Promise<ServerStatus>;
  upgrade(args: string[], timeoutMs?: number): Promise<CliResult>;
  stop(): Promise<void>;
}

async function serve(args: string[]): Promise<Server> {
  const stateDir = tempDir("perilink-handoff-");
  stateDirs.add(stateDir);
  const child = spawnCli(["serve", "--access", "open", "--state-dir", stateDir, ...args]);
  children.add(child);
  serverPids.add(child.pid!);
  const pids = new Set<number>([child.pid!]);
  let log = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (log += s));
  child.stdout!.resume();
  const status = async (): Promise<ServerStatus> => {
    const s = (await controlRequest(stateDir, { op: "status" }, 3000)) as ServerStatus;
    for (const pid of [s.pid, s.upgrade?.pid]) {
      if (typeof pid === "number" && pid > 0) {
        pids.add(pid);
        serverPids.add(pid);
      }
    }
    return s;
  };
  const waitStatus = async (cond: (s: ServerStatus) => boolean, what: string, timeoutMs = 10_000): Promise<ServerStatus> => {
    let last: ServerStatus | Error | null = null;
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      try {
        last = await status();
        if (cond(last)) return last;
      } catch (err) {
        last = err as Error; // between generations the control socket may be missing for a moment
      }
      await sleep(25);
    }
    throw new Error(`timed out waiting for ${what}; last status: ${last instanceof Error ? last.message : JSON.stringify(last)}\nlog:\n${log}`);
  };
  try {
    await waitFor(() => log.includes('"server_started"') || child.exitCode !== null, "the server to start", START_MS);
    assert.equal(child.exitCode, null, `serve exited early: ${log}`);
  } catch (err) {
    await killAll(pids);
    throw err;
  }
  const first = await status();
  const port = first.listeners.find((l) => l.transport === "tcp")?.port;
  assert.ok(port, "the server listens on a TCP port");
  return {
    stateDir,
    child,
    port,
    log: () => log,
    status,
    waitStatus,
    upgrade: (upArgs, timeoutMs = 30_000) => runCli(["upgrade", "--state-dir", stateDir, ...upArgs], { timeoutMs }),
    stop: async () => {
      // Every generation, including one we never saw in `status` (it has the state directory in its arguments).
      await killAll([...pids, ...pidsMentioning(stateDir)]);
      await stopChild(child, 2000);
      child.stdout?.destroy();
      child.stderr?.destroy();
    },
  };
}

function connectResult(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve("connected");
    });
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

const tcpPorts = (s: ServerStatus): number[] => s.listeners.filter((l) => l.transport === "tcp").map((l) => l.port).sort((a, b) => a - b);
const udpPorts = (s: ServerStatus): number[] => s.listeners.filter((l) => l.transport === "udp").map((l) => l.port).sort((a, b) => a - b);

// --------------------------------------------------------------------- load

interface Failure {
  line: string;
  /** When what failed began: the connect, or the connect of the session a request ran on. */
  since: number;
  /** A reset or close of the connection (SessionClosedError, handshake timeout), as a killed process causes. */
  connectionLost: boolean;
}

/**
 * A light continuous load: `loops` sessions, each sending one echo request at
 * a time, plus one loop that opens a fresh session for every request (so
 * connections also arrive during the handoff). A request refused after GOAWAY
 * (never started), or a session closed after GOAWAY, is sent again on a new
 * session; anything else is a failure.
 */
class Load {
  ok = 0;
  refused = 0;
  closedAfterGoaway = 0;
  readonly okByGeneration = new Map<number, number>();
  readonly failures: Failure[] = [];
  #stopped = false;
  #loops: Promise<void>[] = [];
  #host = "127.0.0.1";
  #port: number;
  #connectTimeoutMs: number;

  constructor(port: number, options: { loops?: number; connectTimeoutMs?: number } = {}) {
    this.#port = port;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    for (let i = 0; i < (options.loops ?? 4); i++) this.#loops.push(this.#loop(i));
    this.#loops.push(this.#churn());
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#loops);
  }

  /** Resolves once `n` more requests were answered (by generation `generation`, if given). */
  async progress(n: number, what: string, generation?: number, timeoutMs = 10_000): Promise<void> {
    const count = (): number => (generation === undefined ? this.ok : (this.okByGeneration.get(generation) ?? 0));
    const target = count() + n;
    const failuresBefore = this.failures.length;
    await waitFor(() => count() >= target || (generation === undefined && this.failures.length > failuresBefore + 20), `${n} answered requests ${what} (${this.summary()})`, timeoutMs);
  }

  /**
   * Failures that count as errors. `lostBefore`: connections begun before this
   * time may be lost (their server process was killed, or a rollback dropped
   * its queue); whatever began later must succeed.
   */
  errors(lostBefore?: number): string[] {
    return this.failures.filter((f) => !(lostBefore !== undefined && f.connectionLost && f.since < lostBefore)).map((f) => f.line);
  }

  summary(lostBefore?: number): string {
    return JSON.stringify({
      ok: this.ok,
      byGeneration: Object.fromEntries(this.okByGeneration),
      refused: this.refused,
      closedAfterGoaway: this.closedAfterGoaway,
      failures: this.failures.length,
      errors: this.errors(lostBefore).length,
    });
  }

  #fail(where: string, err: unknown, since: number): void {
    const e = err as Error & { code?: string };
    if (this.failures.length >= 200) return;
    this.failures.push({
      line: `${where}: ${e.name} [${e.code ?? "-"}] ${e.message}`,
      since,
      connectionLost: err instanceof SessionClosedError || e.code === "PERILINK_HANDSHAKE_TIMEOUT",
    });
  }

  async #connect(localAddress?: string): Promise<ClientSession> {
    return ClientSession.connect({ host: this.#host, port: this.#port, timeoutMs: this.#connectTimeoutMs, requestTimeoutMs: 5000, localAddress });
  }

  #answered(s: ClientSession): void {
    this.ok++;
    this.okByGeneration.set(s.generation, (this.okByGeneration.get(s.generation) ?? 0) + 1);
  }

  async #loop(i: number): Promise<void> {
    let s: ClientSession | null = null;
    let ch: ClientChannel | null = null;
    let since = 0;
    let seq = 0;
    while (!this.#stopped) {
      if (!s || !ch || s.closed || s.draining) {
        if (s && !s.closed) s.destroy();
        s = null;
        ch = null;
        since = Date.now();
        try {
          s = await this.#connect();
          ch = await s.openChannel(`load${i}`);
        } catch (err) {
          if (err instanceof RequestRefusedError) this.refused++; // GOAWAY while opening the channel
          else this.#fail(`loop ${i} connect`, err, since);
          s?.destroy();
          s = null;
          await sleep(20);
          continue;
        }
      }
      const msg = `${i}:${seq}`;
      try {
        const reply = await ch.request(msg, { timeoutMs: 5000 });
        if (reply.toString() === msg) {
          this.#answered(s);
          seq++;
        } else {
          this.#fail(`loop ${i}`, new Error(`sent ${msg}, got ${reply.toString()}`), since);
        }
      } catch (err) {
        if (err instanceof RequestRefusedError) this.refused++; // never started: send it again
        else if (err instanceof SessionClosedError && s.draining) this.closedAfterGoaway++;
        else this.#fail(`loop ${i} request ${msg}`, err, since);
      }
      await sleep(2);
    }
    s?.destroy();
  }

  /** One fresh session per request. */
  async #churn(): Promise<void> {
    let seq = 0;
    while (!this.#stopped) {
      const since = Date.now();
      const msg = `churn:${seq}`;
      let s: ClientSession | null = null;
      try {
        // Many short-lived clients (a fleet of CLI calls), each well within the per-peer session rate.
        s = await this.#connect(this.#host === "127.0.0.1" ? `127.0.0.${100 + (seq % 64)}` : undefined);
        const ch = await s.openChannel("churn");
        const reply = await ch.request(msg, { timeoutMs: 5000 });
        if (reply.toString() === msg) {
          this.#answered(s);
          seq++;
        } else {
          this.#fail("churn", new Error(`sent ${msg}, got ${reply.toString()}`), since);
        }
      } catch (err) {
        if (err instanceof RequestRefusedError) this.refused++;
        else if (err instanceof SessionClosedError && s?.draining) this.closedAfterGoaway++;
        else this.#fail(`churn ${msg}`, err, since);
        await sleep(20);
      } finally {
        s?.destroy();
      }
      await sleep(5);
    }
  }
}

function assertLoadClean(load: Load, srv: Server, lostBefore?: number): void {
  assert.deepEqual(load.errors(lostBefore).slice(0, 20), [], `the load saw errors (${load.summary(lostBefore)})\nlog:\n${srv.log()}`);
  assert.ok(load.ok > 0, "the load got answers");
}

/** Runs `body` with a server and a load; stops both whatever happens. */
async function withServer(args: string[], body: (srv: Server, load: Load) => Promise<void>, loadOptions: { connectTimeoutMs?: number } = {}): Promise<void> {
  const srv = await serve(args);
  const load = new Load(srv.port, loadOptions);
  try {
    await load.progress(20, "before the fault");
    await body(srv, load);
  } finally {
    await load.stop();
    await srv.stop();
  }
}

/** Files for `--program` and `--app`. */
interface Programs {
  dir: string;
  exit1: string;
  hang: string;
  slowApp: string;
  dieAfterHandover: string;
  hangAfterHandover: string;
  hangAfterHandoverLauncher: string;
}

function programs(): Programs {
  const dir = tempDir("perilink-programs-");
  const exit1 = path.join(dir, "exit1.mjs");
  writeFileSync(exit1, "process.exit(1);\n");
  const hang = path.join(dir, "hang.mjs");
  writeFileSync(hang, "setInterval(() => {}, 1000);\n");
  const slowApp = path.join(dir, "slow_app.mjs");
  writeFileSync(slowApp, `await new Promise((r) => setTimeout(r, ${SLOW_APP_MS}));\nexport default { request(p) { return p; } };\n`);
  // Stand-ins for a new version that fails while taking over (after the old one stopped accepting):
  // they speak the handoff protocol (handoff_protocol.ts) over the IPC channel themselves.
  const dieAfterHandover = path.join(dir, "die_after_handover.mjs");
  writeFileSync(dieAfterHandover, 'process.send({ t: "transfer-request" });\nprocess.on("message", (m) => { if (m?.t === "transfer-response") process.exit(3); });\n');
  const hangAfterHandover = path.join(dir, "hang_after_handover.mjs");
  // With a large heap, as a real server may have: the kernel takes a moment to tear it down after SIGKILL.
  writeFileSync(
    hangAfterHandover,
    'const heap = Buffer.alloc(256 * 1024 * 1024, 1);\nprocess.send({ t: "transfer-request" });\nprocess.on("message", () => {});\nsetInterval(() => heap[0]++, 1000);\n',
  );
  // A launcher script that does not exec: the program above runs as the shell's child. (A
  // non-script --program is run directly, so a wrapper like this is a supported way to start one.)
  const hangAfterHandoverLauncher = path.join(dir, "launch-hang-after-handover");
  writeFileSync(hangAfterHandoverLauncher, `#!/bin/sh\n${JSON.stringify(process.execPath)} ${JSON.stringify(hangAfterHandover)} "$@"\n`, { mode: 0o755 });
  return { dir, exit1, hang, slowApp, dieAfterHandover, hangAfterHandover, hangAfterHandoverLauncher };
}

const oneLine = (s: string): string => s.trim().split("\n").slice(-1)[0] ?? "";

// -------------------------------------------------------------------- tests

test("a program that does not exist: upgrade exits 1 with a clear message, nothing changes", async (t) => {
  if (skipped(t)) return;
  await withServer(["--listen", "127.0.0.1:0"], async (srv, load) => {
    const before = await srv.status();
    const r = await srv.upgrade(["--program", "/nonexistent.mjs", "--timeout", "5000"]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
    assert.match(r.stderr, /^perilink upgrade: Cannot upgrade: program \/nonexistent\.mjs does not exist; nothing was changed \[PERILINK_UPGRADE_FAILED\]$/m);
    await load.progress(20, "after the refusal");
    const now = await srv.status();
    assert.equal(now.generation, 1);
    assert.equal(now.pid, before.pid);
    assert.equal(now.serverId, before.serverId);
    assert.equal(now.accepting, true);
    assert.equal(now.upgrade, null);
    assert.equal(now.handedOver, false);
    assert.deepEqual(now.listeners, before.listeners);
    assertLoadClean(load, srv);
  });
});

test("a program that exits 1: upgrade exits 1 saying so; the old process keeps serving", async (t) => {
  if (skipped(t)) return;
  const { exit1 } = programs();
  await withServer(["--listen", "127.0.0.1:0"], async (srv, load) => {
    const before = await srv.status();
    const r = await srv.upgrade(["--program", exit1, "--timeout", "10000"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(oneLine(r.stderr), /Cannot upgrade: the new program exited with code 1 before it was ready .*the running process \(generation 1\) keeps serving \[PERILINK_UPGRADE_FAILED\]/);
    assert.match(srv.log(), /"upgrade_rolled_back"/);
    await load.progress(20, "after the rollback");
    const now = await srv.status();
    assert.equal(now.generation, 1);
    assert.equal(now.pid, before.pid);
    assert.equal(now.serverId, before.serverId);
    assert.equal(now.accepting, true);
    assert.equal(now.upgrade, null);
    assertLoadClean(load, srv);
  });
});

test("a program that never gets ready: upgrade exits 1 after the timeout and the hung process is killed", async (t) => {
  if (skipped(t)) return;
  const { hang } = programs();
  await withServer(["--listen", "127.0.0.1:0"], async (srv, load) => {
    const before = await srv.status();
    const t0 = Date.now();
    const up = srv.upgrade(["--program", hang, "--timeout", "1500"]);
    const during = await srv.waitStatus((s) => typeof s.upgrade?.pid === "number", "the upgrade to start the new program", START_MS);
    const hungPid = during.upgrade!.pid!;
    assert.ok(alive(hungPid), "the new program runs");
    assert.notEqual(hungPid, before.pid);
    const r = await up;
    const took = Date.now() - t0;
    assert.equal(r.code, 1, r.stderr);
    assert.match(oneLine(r.stderr), /Cannot upgrade: the new program was not ready within 1500 ms and was killed; the running process \(generation 1\) keeps serving \[PERILINK_UPGRADE_FAILED\]/);
    assert.ok(took >= 1500, `upgrade gave up after ${took} ms`);
    await waitFor(() => !alive(hungPid), `the hung program (pid ${hungPid}) to be gone`, 3000);
    await load.progress(20, "after the timeout");
    const now = await srv.status();
    assert.equal(now.generation, 1);
    assert.equal(now.pid, before.pid);
    assert.equal(now.serverId, before.serverId);
    assert.equal(now.upgrade, null);
    assert.equal(now.accepting, true);
    assertLoadClean(load, srv);
  });
});

test("kill -9 of the new process before it takes over: upgrade exits 1; the old one keeps serving", async (t) => {
  if (skipped(t)) return;
  const { slowApp } = programs();
  await withServer(["--listen", "127.0.0.1:0"], async (srv, load) => {
    const before = await srv.status();
    const up = srv.upgrade(["--app", slowApp, "--timeout", "15000"]);
    const during = await srv.waitStatus((s) => typeof s.upgrade?.pid === "number", "the upgrade to start the new program", START_MS);
    const newPid = during.upgrade!.pid!;
    await sleep(300); // it is loading the slow app now
    assert.ok(alive(newPid));
    process.kill(newPid, "SIGKILL");
    const r = await up;
    assert.equal(r.code, 1, r.stderr);
    assert.match(oneLine(r.stderr), /Cannot upgrade: the new program was killed by SIGKILL before it was ready .*keeps serving \[PERILINK_UPGRADE_FAILED\]/);
    await load.progress(20, "after the new process died");
    const now = await srv.status();
    assert.equal(now.generation, 1);
    assert.equal(now.pid, before.pid);
    assert.equal(now.serverId, before.serverId);
    assert.equal(now.upgrade, null);
    assert.equal(now.handedOver, false);
    assert.equal(now.accepting, true);
    assert.equal(alive(newPid), false);
    assertLoadClean(load, srv);
  });
});

test("kill -9 of the old process during the handoff: the new one takes over anyway", async (t) => {
  if (skipped(t)) return;
  const { slowApp } = programs();
  // Clients reconnecting while nobody accepts wait in the listen backlog until the new process is ready.
  await withServer(
    ["--listen", `127.0.0.1:${await freeTcpUdpPort()}`],
    async (srv, load) => {
      const before = await srv.status();
      const up = spawnCli(["upgrade", "--state-dir", srv.stateDir, "--app", slowApp, "--timeout", "15000"]);
      children.add(up);
      up.stdout!.resume();
      up.stderr!.resume();
      const during = await srv.waitStatus((s) => typeof s.upgrade?.pid === "number", "the upgrade to start the new program", START_MS);
      const newPid = during.upgrade!.pid!;
      await sleep(300); // the new process is loading the slow app
      assert.ok(alive(newPid), `the new process runs\nlog:\n${srv.log()}`);
      const died = new Promise<number>((r) => srv.child.once("exit", () => r(Date.now())));
      srv.child.kill("SIGKILL");
      const diedAt = await died;
      // (Its control socket answers a moment before it reports accepting: see the report.)
      const now = await srv.waitStatus((s) => s.generation === 2 && s.accepting, "the new process to take over", SLOW_APP_MS + 10_000);
      assert.equal(now.pid, newPid);
      assert.equal(now.serverId, before.serverId);
      assert.deepEqual(now.listeners, before.listeners, "the same listeners");
      assert.equal(now.accepting, true);
      assert.match(srv.log(), /"takeover_parent_gone"/);
      const tookOverAt = Date.now();
      await load.progress(40, "from generation 2", 2, 15_000);
      // Connections and sessions begun before the old process died may be lost with it; nothing begun later may
      // fail. With SO_REUSEPORT (Deno) nothing holds the port from the old one's death until the new one binds
      // it (after loading its app): connections are refused until then (a limit of that mode, see the report).
      const lostBefore = detectRuntime().handoff === "inherit" ? diedAt : tookOverAt;
      const lost = load.failures.filter((f) => f.connectionLost && f.since < lostBefore);
      t.diagnostic(`load ${load.summary(lostBefore)}; lost with the killed process: ${lost.length}, e.g. ${JSON.stringify(lost.slice(0, 3).map((f) => f.line))}`);
      assertLoadClean(load, srv, lostBefore);
      up.kill("SIGKILL"); // its server is gone (see the test below)
    },
    { connectTimeoutMs: SLOW_APP_MS + 7000 },
  );
});

test("the upgrade command exits 1 at once when its server dies during the upgrade", async (t) => {
  if (skipped(t)) return;
  // Regression guard: controlRequest() had no "close" handler, so the command waited
  // for its whole timeout (now 3 × --timeout + 5 s) when its server died.
  const { hang } = programs();
  const srv = await serve(["--listen", "127.0.0.1:0"]);
  try {
    const up = spawnCli(["upgrade", "--state-dir", srv.stateDir, "--program", hang, "--timeout", "10000"]);
    children.add(up);
    let upErr = "";
    up.stdout!.resume();
    up.stderr!.setEncoding("utf8").on("data", (s: string) => (upErr += s));
    const exited = new Promise<number | null>((r) => up.once("exit", (code) => r(code)));
    await srv.waitStatus((s) => typeof s.upgrade?.pid === "number", "the upgrade to start the new program", START_MS);
    srv.child.kill("SIGKILL");
    const code = await Promise.race([exited, sleep(3000).then(() => "still running" as const)]);
    up.kill("SIGKILL");
    assert.equal(code, 1, `upgrade 3 s after its server died: ${code}; ${upErr.trim()}`);
    assert.match(upErr, /Cannot upgrade|server/);
  } finally {
    await srv.stop();
  }
});

/** The rollback after the handover began: the old process binds its ports again and keeps serving. */
async function rollbackAfterHandover(
  t: { diagnostic(m: string): void },
  listen: string,
  program: "dieAfterHandover" | "hangAfterHandover" | "hangAfterHandoverLauncher",
): Promise<void> {
  const progs = programs();
  await withServer(["--listen", listen], async (srv, load) => {
    try {
      const before = await srv.status();
      // Long enough for a loaded machine to start the new program and reach the handover before
      // the timeout (otherwise the upgrade fails earlier, with another message).
      const timeoutMs = 6000;
      const up = srv.upgrade(["--program", progs[program], "--timeout", String(timeoutMs)]);
      const during = await srv.waitStatus((s) => typeof s.upgrade?.pid === "number", "the upgrade to start the new program", START_MS).catch(() => null);
      const r = await up;
      const rolledBackAt = Date.now();
      const leftOver = pidsMentioning(progs.dir);
      for (const pid of leftOver) serverPids.add(pid); // ended after the file whatever happens
      assert.equal(r.code, 1, r.stderr);
      const why = program === "dieAfterHandover" ? "exited with code 3 before it was accepting" : `was not accepting within ${timeoutMs} ms and was killed`;
      assert.match(
        oneLine(r.stderr),
        new RegExp(`Cannot upgrade: the new program ${why}( \\(see its log lines\\))? after the handover began; the running process bound its ports again and keeps serving .*\\[PERILINK_UPGRADE_FAILED\\]$`),
      );
      // A SIGKILLed 256 MiB process takes the kernel a while to tear down on a loaded machine.
      if (during?.upgrade?.pid) await waitFor(() => !alive(during.upgrade!.pid!), "the failed new program to be gone", 10_000);
      await waitFor(() => pidsMentioning(progs.dir).length === 0, `every process of the failed new program to be gone (${leftOver.join(", ")})`, 10_000);
      assert.ok(alive(before.pid), `the old process still runs\nlog:\n${srv.log()}`);
      const now = await srv.waitStatus(() => true, "the old process to answer status again", 10_000);
      assert.equal(now.pid, before.pid);
      assert.equal(now.generation, 1);
      assert.equal(now.serverId, before.serverId);
      assert.equal(now.accepting, true);
      assert.equal(now.upgrade, null);
      assert.deepEqual(now.listeners, before.listeners, "the same addresses and ports as before");
      await load.progress(30, "after the rollback");
      // Connections queued while nobody accepted are lost in a rollback (documented); later ones must succeed.
      const lost = load.failures.filter((f) => f.connectionLost && f.since < rolledBackAt);
      t.diagnostic(`load ${load.summary(rolledBackAt)}; lost in the rollback: ${lost.length}`);
      assertLoadClean(load, srv, rolledBackAt);
    } finally {
      // A process of the failed program still holding the port would also keep the load's connects waiting.
      await killAll(pidsMentioning(progs.dir), 500);
    }
  });
}

test("a new program that dies after the handover began: the old process binds the same port again and keeps serving", async (t) => {
  if (skipped(t)) return;
  await rollbackAfterHandover(t, `127.0.0.1:${await freeTcpUdpPort()}`, "dieAfterHandover");
});

test("a rollback keeps a port the kernel chose (listen on port 0)", async (t) => {
  if (skipped(t)) return;
  // Regression guard: resumeAccepting() rebuilt the listeners from the configured
  // entry, still port 0, so the old process came back on another random port.
  await rollbackAfterHandover(t, "127.0.0.1:0", "dieAfterHandover");
});

test("a new program that never says it is accepting: killed at the timeout, the old process binds its port again", async (t) => {
  if (skipped(t)) return;
  // Regression guard: the old process bound the port again while the SIGKILLed child
  // (slow to tear down with its large heap) still held the listening socket: EADDRINUSE.
  await rollbackAfterHandover(t, `127.0.0.1:${await freeTcpUdpPort()}`, "hangAfterHandover");
});

test("a new program started by a launcher that does not exec, never accepting: all of it is killed and the old process binds its port again", async (t) => {
  if (skipped(t)) return;
  // Regression: the rollback killed only the launcher (the shell); the real program lived
  // on holding the inherited sockets, so binding the port again failed.
  await rollbackAfterHandover(t, `127.0.0.1:${await freeTcpUdpPort()}`, "hangAfterHandoverLauncher");
});

test("an upgrade keeps a port the kernel chose (listen on port 0)", async (t) => {
  if (skipped(t)) return;
  // Regression: with SO_REUSEPORT (Deno) the new process bound port 0 again and came up on another port.
  await withServer(["--listen", "127.0.0.1:0", "--listen", "[::1]:0"], async (srv, load) => {
    const before = await srv.status();
    const r = await srv.upgrade(["--timeout", "15000", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const now = await srv.waitStatus((s) => s.generation === 2 && s.accepting, "generation 2 to answer status");
    assert.equal(now.serverId, before.serverId);
    assert.deepEqual(now.listeners, before.listeners, "the same ports as the first generation's");
    await load.progress(20, "from generation 2", 2);
    assertLoadClean(load, srv);
  });
});

test("two upgrade requests at once: exactly one succeeds, the other is refused as already under way", async (t) => {
  if (skipped(t)) return;
  const { slowApp } = programs();
  await withServer(["--listen", `127.0.0.1:${await freeTcpUdpPort()}`], async (srv, load) => {
    const before = await srv.status();
    const [a, b] = await Promise.all([
      srv.upgrade(["--app", slowApp, "--timeout", "15000", "--json"]),
      srv.upgrade(["--app", slowApp, "--timeout", "15000", "--json"]),
    ]);
    const codes = [a.code, b.code].sort();
    assert.deepEqual(codes, [0, 1], `exactly one succeeds: ${a.stderr} | ${b.stderr}`);
    const [won, lost] = a.code === 0 ? [a, b] : [b, a];
    assert.match(oneLine(lost.stderr), /Cannot upgrade: an upgrade is already under way \(new pid (\d+|starting), for \d+ ms\); wait for it to finish \[PERILINK_UPGRADE_IN_PROGRESS\]/);
    const result = JSON.parse(won.stdout) as { generation: number; pid: number; previousPid: number };
    assert.equal(result.generation, 2);
    assert.equal(result.previousPid, before.pid);
    const now = await srv.waitStatus((s) => s.generation === 2 && s.pid === result.pid, "generation 2 to answer status");
    assert.equal(now.serverId, before.serverId);
    assert.deepEqual(now.listeners, before.listeners);
    await load.progress(20, "from generation 2", 2);
    await waitFor(() => !alive(before.pid), "the old process to drain and exit", 10_000);
    assertLoadClean(load, srv);
  });
});

test("a new config that adds a port: after the upgrade both ports serve; the first never stopped", async (t) => {
  if (skipped(t)) return;
  const p1 = await freeTcpUdpPort();
  const p2 = await freeTcpUdpPort();
  assert.notEqual(p1, p2);
  const cfg = path.join(tempDir("perilink-config-"), "perilink.json");
  writeFileSync(cfg, JSON.stringify({ listen: [`127.0.0.1:${p1}`], rescanIntervalMs: 0 }));
  await withServer(["--config", cfg], async (srv, load) => {
    assert.equal(srv.port, p1);
    const before = await srv.status();
    assert.deepEqual(tcpPorts(before), [p1]);
    assert.notEqual(await connectResult(p2), "connected", "P2 is not served yet");
    writeFileSync(cfg, JSON.stringify({ listen: [`127.0.0.1:${p1}`, `127.0.0.1:${p2}`], rescanIntervalMs: 0 }));
    const r = await srv.upgrade(["--timeout", "15000", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    await srv.waitStatus((s) => s.generation === 2 && s.draining.length === 0, "generation 2 to answer status, generation 1 drained");
    const st = await runCli(["status", "--state-dir", srv.stateDir, "--json"]);
    assert.equal(st.code, 0, st.stderr);
    const now = JSON.parse(st.stdout) as ServerStatus;
    assert.equal(now.generation, 2);
    assert.equal(now.serverId, before.serverId);
    assert.equal(now.accepting, true);
    assert.deepEqual(now.draining, [], "generation 1 has drained");
    const both = [p1, p2].sort((a, b) => a - b);
    assert.deepEqual(tcpPorts(now), both);
    assert.deepEqual(udpPorts(now), both);
    for (const extra of [[], ["--tcp"]]) {
      const id = await runCli(["id", `127.0.0.1:${p2}`, "--json", ...extra]);
      assert.equal(id.code, 0, id.stderr);
      const who = JSON.parse(id.stdout) as { serverId: string; generation: number };
      assert.equal(who.serverId, before.serverId, `P2 answers ${extra.join(" ") || "--udp"} as the same server`);
      assert.equal(who.generation, 2);
    }
    await load.progress(20, "on P1 from generation 2", 2);
    assertLoadClean(load, srv);
  });
});

test("a new config that removes a port: after the upgrade it refuses connections; the other never stopped", async (t) => {
  if (skipped(t)) return;
  const p1 = await freeTcpUdpPort();
  const p2 = await freeTcpUdpPort();
  assert.notEqual(p1, p2);
  const cfg = path.join(tempDir("perilink-config-"), "perilink.json");
  writeFileSync(cfg, JSON.stringify({ listen: [`127.0.0.1:${p1}`, `127.0.0.1:${p2}`], rescanIntervalMs: 0 }));
  await withServer(["--config", cfg], async (srv, load) => {
    assert.equal(srv.port, p1);
    const before = await srv.status();
    assert.deepEqual(tcpPorts(before), [p1, p2].sort((a, b) => a - b));
    assert.equal(await connectResult(p2), "connected");
    writeFileSync(cfg, JSON.stringify({ listen: [`127.0.0.1:${p1}`], rescanIntervalMs: 0 }));
    const r = await srv.upgrade(["--timeout", "15000", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const now = await srv.waitStatus((s) => s.generation === 2, "generation 2 to answer status");
    assert.equal(now.serverId, before.serverId);
    assert.deepEqual(tcpPorts(now), [p1]);
    assert.deepEqual(udpPorts(now), [p1]);
    assert.equal(await connectResult(p2), "ECONNREFUSED", "P2 is closed");
    const id = await runCli(["id", `127.0.0.1:${p2}`, "--json", "--timeout", "300"]);
    assert.equal(id.code, 1, "nothing answers on P2's UDP port either");
    if (detectRuntime().handoff === "inherit") assert.match(srv.log(), /"inherited_socket_closed".*"port":\s*\d+/, "the new process closed the socket it inherited for P2");
    await load.progress(20, "on P1 from generation 2", 2);
    assertLoadClean(load, srv);
  });
});

/** Whether any process of the group `pgid` runs (a group of zombies only counts as gone). */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid && fields[0] !== "Z") return true;
    } catch {
      // gone
    }
  }
  return false;
}

test("SIGTERM during an upgrade cancels it: the new process group is killed, in-flight requests are answered, nothing listens afterwards", async (t) => {
  if (skipped(t)) return;
  // Regression: the old process drained and exited while the upgrade went on, and the new
  // process then took the sockets over: the service ran on after the operator had stopped it.
  const { slowApp } = programs();
  const port = await freeTcpUdpPort();
  const srv = await serve(["--listen", `127.0.0.1:${port}`, "--app", RECORDING_APP]);
  const session = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 5000, requestTimeoutMs: 15_000 });
  try {
    const before = await srv.status();
    const up = spawnCli(["upgrade", "--state-dir", srv.stateDir, "--app", slowApp, "--timeout", "15000"]);
    children.add(up);
    let upErr = "";
    up.stdout!.resume();
    up.stderr!.setEncoding("utf8").on("data", (s: string) => (upErr += s));
    const upExited = new Promise<number | null>((r) => up.once("exit", (code) => r(code)));
    const during = await srv.waitStatus((s) => typeof s.upgrade?.pid === "number", "the upgrade to start the new program", START_MS);
    const newPid = during.upgrade!.pid!;
    await sleep(300); // the new process is loading the slow app
    assert.ok(alive(newPid), `the new process runs\nlog:\n${srv.log()}`);
    const channels = await Promise.all([session.openChannel("a"), session.openChannel("b")]);
    const inflight = channels.map((ch, i) => ch.request(`sleep:1500:${i}`, { timeoutMs: 15_000 }).then((b) => b.toString()));
    await sleep(200); // both requests are running in the old process
    const oldExited = new Promise<number | null>((r) => srv.child.once("exit", (code) => r(code)));
    srv.child.kill("SIGTERM");
    const answers = await Promise.all(inflight);
    for (const [i, a] of answers.entries()) assert.match(a, new RegExp(`^sleep:1500:${i}\\|gen=1\\|pid=${before.pid}$`), "answered by the old process");
    await waitFor(() => !groupAlive(newPid), `the new process group (${newPid}) to be gone\nlog:\n${srv.log()}`, 5000);
    const code = await Promise.race([oldExited, sleep(10_000).then(() => "still running" as const)]);
    assert.notEqual(code, "still running", `the old process exited\nlog:\n${srv.log()}`);
    assert.match(srv.log(), /"drain_finished"/, "after draining");
    // Deno's child_process reports the signal it sent even when the child handled it and exited 0.
    if (detectRuntime().name === "node") assert.equal(code, 0, `the old process exited 0\nlog:\n${srv.log()}`);
    const upCode = await Promise.race([upExited, sleep(5000).then(() => "still running" as const)]);
    assert.equal(upCode, 1, `perilink upgrade exits 1: ${upErr}`);
    assert.match(oneLine(upErr), /Cannot upgrade: .*shutting down.*\[PERILINK_UPGRADE_CANCELLED\]/);
    assert.match(srv.log(), /"upgrade_cancelled"/);
    // Past the moment the slow new program would have been ready: nobody took the port over.
    await sleep(SLOW_APP_MS + 500);
    assert.equal(await connectResult(port), "ECONNREFUSED", `nothing listens on the port\nlog:\n${srv.log()}`);
    assert.deepEqual(pidsMentioning(srv.stateDir), [], "no perilink process of this state directory runs");
    const st = await runCli(["status", "--state-dir", srv.stateDir]);
    assert.equal(st.code, 1, "no server answers status");
  } finally {
    session.destroy();
    await srv.stop();
  }
});

test("three upgrades keep both a fixed port and a port the kernel chose on the same address", async (t) => {
  if (skipped(t)) return;
  // Regression: generation 2 wrote the chosen port into its own config, so it handed generation 3
  // nothing for the port-0 entry; on Node that entry then took the other inherited port of the same
  // address and the chosen port was closed.
  const fixed = await freeTcpUdpPort();
  await withServer(["--listen", `127.0.0.1:${fixed}`, "--listen", "127.0.0.1:0"], async (srv, load) => {
    const before = await srv.status();
    const ports = tcpPorts(before);
    assert.equal(ports.length, 2, "two ports");
    assert.ok(ports.includes(fixed));
    for (let generation = 2; generation <= 4; generation++) {
      const r = await srv.upgrade(["--timeout", "15000", "--json"]);
      assert.equal(r.code, 0, `upgrade to generation ${generation}: ${r.stderr}`);
      const now = await srv.waitStatus((s) => s.generation === generation && s.accepting, `generation ${generation} to answer status`);
      assert.deepEqual(tcpPorts(now), ports, `generation ${generation} listens on the same TCP ports`);
      assert.deepEqual(udpPorts(now), ports, `generation ${generation} listens on the same UDP ports`);
      for (const port of ports) {
        const id = await runCli(["id", `127.0.0.1:${port}`, "--json", "--timeout", "2000"]);
        assert.equal(id.code, 0, `id 127.0.0.1:${port} after upgrade to generation ${generation}: ${id.stderr}`);
        const who = JSON.parse(id.stdout) as { serverId: string; generation: number };
        assert.equal(who.serverId, before.serverId);
        assert.equal(who.generation, generation);
        assert.equal(await connectResult(port), "connected", `TCP 127.0.0.1:${port} accepts`);
      }
      await load.progress(10, `from generation ${generation}`, generation);
    }
    assertLoadClean(load, srv);
  });
});

test("status lists an older generation as draining only while it runs, and does not pass an exited one on at the next upgrade", async (t) => {
  if (skipped(t)) return;
  const srv = await serve(["--listen", "127.0.0.1:0", "--app", RECORDING_APP]);
  try {
    for (let generation = 2; generation <= 3; generation++) {
      const old = await srv.status();
      // A slow request keeps the old generation draining for a while after the upgrade (8 s: an upgrade
      // on a loaded 2-core machine can itself take more than a second).
      const session = await ClientSession.connect({ host: "127.0.0.1", port: srv.port, timeoutMs: 5000, requestTimeoutMs: 15_000 });
      try {
        const ch = await session.openChannel("slow");
        const slow = ch.request("sleep:8000:slow", { timeoutMs: 15_000 });
        await sleep(100);
        const r = await srv.upgrade(["--timeout", "15000", "--json"]);
        assert.equal(r.code, 0, r.stderr);
        const during = await srv.waitStatus((s) => s.generation === generation && s.draining.length > 0, `generation ${generation} to report the old one draining`);
        assert.deepEqual(
          during.draining.map((g) => [g.generation, g.pid]),
          [[generation - 1, old.pid]],
          `only generation ${generation - 1} drains: ${JSON.stringify(during.draining)}`,
        );
        assert.match((await slow).toString(), new RegExp(`^sleep:8000:slow\\|gen=${generation - 1}\\|`));
      } finally {
        session.destroy();
      }
      await waitFor(() => !alive(old.pid), `generation ${generation - 1} (pid ${old.pid}) to exit`, 10_000);
      const now = await srv.status();
      assert.equal(now.generation, generation);
      assert.deepEqual(now.draining, [], `generation ${generation - 1} has exited: nothing drains\nlog:\n${srv.log()}`);
    }
  } finally {
    await srv.stop();
  }
});

test("generations draining at once: one that exited is dropped from status at once and not passed on at the next upgrade", async (t) => {
  if (skipped(t)) return;
  // Regression: a generation merged the reports its parent forwarded and only forgot them when the
  // parent itself finished, so an older generation that had exited stayed listed (and was handed on).
  const srv = await serve(["--listen", "127.0.0.1:0", "--app", RECORDING_APP]);
  const sessions: ClientSession[] = [];
  const slow = async (ms: number): Promise<{ pid: number; answer: Promise<string> }> => {
    const s = await ClientSession.connect({ host: "127.0.0.1", port: srv.port, timeoutMs: 5000, requestTimeoutMs: 40_000 });
    sessions.push(s);
    const ch = await s.openChannel("slow");
    const pid = (await srv.status()).pid;
    const answer = ch.request(`sleep:${ms}:x`, { timeoutMs: 40_000 }).then((b) => b.toString());
    answer.catch(() => {}); // awaited later; a failure of the test before that must not surface as this rejection
    return { pid, answer };
  };
  const upgrade = async (generation: number): Promise<void> => {
    const r = await srv.upgrade(["--timeout", "15000", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    await srv.waitStatus((s) => s.generation === generation && s.accepting, `generation ${generation}`);
  };
  try {
    // Long enough that both still run after two upgrades on a slow, loaded machine (test files run concurrently; 8 s was not).
    const g1 = await slow(16_000);
    await upgrade(2);
    const g2 = await slow(24_000);
    await upgrade(3);
    const both = await srv.status();
    assert.deepEqual(both.draining.map((g) => [g.generation, g.pid]), [[1, g1.pid], [2, g2.pid]], "generations 1 and 2 drain");
    assert.match(await g1.answer, /\|gen=1\|/);
    await waitFor(() => !alive(g1.pid), "generation 1 to exit", 10_000);
    const after1 = await srv.status();
    assert.deepEqual(after1.draining.map((g) => [g.generation, g.pid]), [[2, g2.pid]], `generation 1 has exited: only 2 drains\nlog:\n${srv.log()}`);
    await upgrade(4);
    const at4 = await srv.status();
    assert.ok(!at4.draining.some((g) => g.generation === 1), `generation 4 was not handed the exited generation 1: ${JSON.stringify(at4.draining)}`);
    for (const g of at4.draining) assert.ok(alive(g.pid), `generation ${g.generation} (pid ${g.pid}) listed as draining runs`);
    assert.ok(at4.draining.some((g) => g.generation === 2), "generation 2 still drains");
    assert.match(await g2.answer, /\|gen=2\|/);
    await waitFor(() => !alive(g2.pid), "generation 2 to exit", 10_000);
    await waitFor(async () => !(await srv.status()).draining.some((g) => g.generation === 3), "generation 3 to finish draining", 5000);
    assert.deepEqual((await srv.status()).draining, [], "every older generation has exited: nothing drains");
  } finally {
    for (const s of sessions) s.destroy();
    await srv.stop();
  }
});
