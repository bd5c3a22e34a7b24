/**
 * Upgrades an app takes part in (S4, docs/apps.md "Upgrades"), with real
 * `perilink serve` processes and a descriptor only one process may hold: the
 * journal of test/fixtures/handoff_app.ts, a file locked with flock(1) and
 * opened without O_APPEND, so that every holder of the open file shares one
 * offset. While each upgrade runs, a watcher tries to lock the file anew every
 * few milliseconds (as any other process would) and a load sends echo
 * requests on four sessions: the lock must never be free while a generation
 * runs, and no request may fail.
 *
 * Node.js only: Deno cannot pass descriptors to a new process (its upgrade
 * binds the ports again with SO_REUSEPORT), so every test skips there.
 */
import assert from "node:assert/strict";
import { execFile, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { identifyUdp } from "../../src/client/identify.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { controlRequest } from "../../src/server/control_server.ts";
import type { ServerStatus } from "../../src/server/server.ts";
import { REPO_ROOT, runCli, spawnCli, stopChild, type CliResult } from "../helpers/cli.ts";
import { sleep, tempDir, waitFor } from "../helpers/fixtures.ts";
import { perilinkLoad, type LoadReport } from "../helpers/load.ts";
import { killPids, pidAlive, pidsKilledAfterFile } from "../helpers/pid_alive.ts";

const APP = path.join(REPO_ROOT, "test/fixtures/handoff_app.ts");
const SKIP = detectRuntime().handoff === "inherit" ? null : "Deno cannot pass descriptors to a new process (an upgrade there binds the ports again with SO_REUSEPORT)";

/** Every pid seen serving (later generations are not our children): killed after the file. */
const seen = pidsKilledAfterFile();
const children = new Set<ChildProcess>();
after(async () => {
  await Promise.all([...children].map((c) => stopChild(c, 2000)));
});

interface Served {
  dir: string;
  journal: string;
  port: number;
  log(): string;
  status(): Promise<ServerStatus>;
  control(c: Record<string, unknown>): void;
  upgrade(args?: string[]): Promise<CliResult>;
  /** The answer of the serving generation's app to "whoami". */
  whoami(): Promise<{ pid: number; generation: number; fd: number | null; received: unknown }>;
  stop(): Promise<void>;
}

async function serve(config: Record<string, unknown> = {}): Promise<Served> {
  const dir = tempDir("perilink-app-upgrade-");
  const journal = path.join(dir, "journal");
  const controlFile = path.join(dir, "control.json");
  const configFile = path.join(dir, "perilink.json");
  writeFileSync(configFile, JSON.stringify({ listen: ["127.0.0.1:0"], rescanIntervalMs: 0, ...config }));
  const stateDir = path.join(dir, "state");
  const child = spawnCli(["serve", "--config", configFile, "--app", APP, "--access", "open", "--state-dir", stateDir, "--log-format", "json"], {
    env: { ...process.env, HANDOFF_JOURNAL: journal, HANDOFF_CONTROL: controlFile },
  });
  children.add(child);
  seen.add(child.pid!);
  let log = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (log += s));
  child.stdout!.resume();
  await waitFor(() => log.includes('"server_started"') || child.exitCode !== null, "the server to start", 30_000);
  assert.equal(child.exitCode, null, log);
  const status = async (): Promise<ServerStatus> => {
    const s = (await controlRequest(stateDir, { op: "status" }, 3000)) as ServerStatus;
    seen.add(s.pid);
    if (s.upgrade?.pid) seen.add(s.upgrade.pid);
    return s;
  };
  const port = (await status()).listeners.find((l) => l.transport === "tcp")!.port;
  return {
    dir,
    journal,
    port,
    log: () => log,
    status,
    control: (c) => writeFileSync(controlFile, JSON.stringify(c)),
    upgrade: (args = []) => runCli(["upgrade", "--state-dir", stateDir, "--timeout", "15000", ...args], { timeoutMs: 40_000 }),
    whoami: async () => {
      const s = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 5000 });
      try {
        const ch = await s.openChannel("whoami");
        const answer = JSON.parse((await ch.request("whoami")).toString()) as Awaited<ReturnType<Served["whoami"]>>;
        seen.add(answer.pid);
        return answer;
      } finally {
        s.destroy();
      }
    },
    stop: async () => {
      const pids = [...seen].filter(pidAlive);
      for (const p of pids) process.kill(p, "SIGTERM");
      await waitFor(() => !pids.some(alive), "every generation to exit", 10_000).catch(() => killPids(pids));
      await stopChild(child, 2000);
    },
  };
}

/** Whether `pid` runs (a zombie, as an exited child of an exited parent may be for a moment, counts as gone). */
function alive(pid: number): boolean {
  if (!pidAlive(pid)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}

/**
 * Tries to take the journal's lock as any other process would (its own open
 * file, `flock -n`) every 20 ms until stopped. Counts the tries, and those
 * that got it: while a generation holds the journal none may.
 */
function lockWatcher(file: string): { stop(): Promise<{ tries: number; got: number }> } {
  let stopping = false;
  let tries = 0;
  let got = 0;
  const loop = (async () => {
    while (!stopping) {
      const code = await new Promise<number>((resolve) => {
        execFile("flock", ["-n", "-x", file, "true"], (err) => resolve(err ? Number((err as { code?: number }).code ?? 1) : 0));
      });
      tries++;
      if (code === 0) got++;
      await sleep(20);
    }
  })();
  return {
    stop: async () => {
      stopping = true;
      await loop;
      return { tries, got };
    },
  };
}

/** Whether process `pid` has `file` open, and at which offset (Linux /proc). */
function openedBy(pid: number, file: string): { fd: number; pos: number } | null {
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === file) {
        const pos = Number(/^pos:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))?.[1]);
        return { fd: Number(fd), pos };
      }
    } catch {
      // closed meanwhile
    }
  }
  return null;
}

/** flock(2) locks on the file's inode (/proc/locks). */
function flocksOn(file: string): number {
  const ino = statSync(file).ino;
  return readFileSync("/proc/locks", "utf8")
    .split("\n")
    .filter((l) => / FLOCK /.test(l) && l.split(/\s+/)[5]?.endsWith(`:${ino}`)).length;
}

function journalLines(file: string): string[] {
  return readFileSync(file, "utf8").split("\n").filter((l) => l !== "");
}

function assertLoadClean(report: LoadReport, log: string): void {
  assert.deepEqual(report.errors.slice(0, 10), [], `failed requests (${report.errors.length})\nlog:\n${log}`);
  assert.ok(report.answered.size > 20, `the load got answers (${report.answered.size})`);
}

test("the new generation gets the very same open file: the lock is held throughout, writes go on at the shared offset, the state arrives, the old one's drain() runs", async (t) => {
  if (SKIP) return t.skip(SKIP);
  const srv = await serve();
  try {
    const first = await srv.whoami();
    const load = perilinkLoad("127.0.0.1", srv.port, 4, { maxMs: 60_000 });
    const watch = lockWatcher(srv.journal);
    await sleep(300);
    const r = await srv.upgrade(["--json"]);
    assert.equal(r.code, 0, `${r.stderr}\n${srv.log()}`);
    const second = await srv.whoami();
    assert.equal(second.generation, 2);
    assert.notEqual(second.pid, first.pid);
    await waitFor(() => !alive(first.pid), "the old generation to drain and exit", 15_000);
    await sleep(300); // requests on generation 2 alone
    const report = await load.stop();
    const locking = await watch.stop();
    assertLoadClean(report, srv.log());
    assert.ok(locking.tries >= 10, `the watcher tried ${locking.tries} times`);
    assert.equal(locking.got, 0, "nobody else could lock the journal at any moment");
    assert.equal(flocksOn(srv.journal), 1, "one lock on the file, held by the open file both generations shared");

    const received = second.received as { from: number; count: number };
    assert.equal(received.from, first.pid, "the state the old generation put");
    assert.ok(received.count > 0, `with the count it had reached when the new one asked (${received.count})`);
    assert.equal(typeof second.fd, "number");

    const lines = journalLines(srv.journal);
    for (const l of lines) assert.match(l, /^(ready|req|drain) [^\n]*pid=\d+/, `a whole line, not one written over: ${JSON.stringify(l)}`);
    assert.match(lines[0]!, new RegExp(`^ready pid=${first.pid} inherited=false state=null$`));
    const ready2 = lines.findIndex((l) => l.startsWith(`ready pid=${second.pid} inherited=true state={"from":${first.pid},`));
    assert.ok(ready2 > 0, `generation 2 took the journal: ${lines.filter((l) => l.startsWith("ready"))}`);
    assert.ok(lines.includes(`drain pid=${first.pid} handedOver=true`), "the old generation's drain() ran, told it was handed over");
    assert.ok(lines.some((l) => l.startsWith("req ") && l.endsWith(`pid=${first.pid}`)) && lines.some((l) => l.startsWith("req ") && l.endsWith(`pid=${second.pid}`)), "both wrote requests");
    const held = openedBy(second.pid, srv.journal);
    assert.ok(held, "generation 2 holds the journal");
    assert.equal(held.pos, statSync(srv.journal).size, "its offset is where the old one's writes ended: the same open file, not one opened anew");
    t.diagnostic(`requests ${report.answered.size} (resent after GOAWAY ${report.resent}), lock tries ${locking.tries}, journal lines ${lines.length}, state ${JSON.stringify(received)}`);
  } finally {
    await srv.stop();
  }
});

test("a descriptor the new generation does not take is closed: it is not open there, and the lock is free once the old one exits", async (t) => {
  if (SKIP) return t.skip(SKIP);
  const srv = await serve();
  try {
    const first = await srv.whoami();
    srv.control({ take: false });
    const r = await srv.upgrade();
    assert.equal(r.code, 0, `${r.stderr}\n${srv.log()}`);
    const second = await srv.whoami();
    assert.equal(second.fd, null);
    assert.equal(openedBy(second.pid, srv.journal), null, "closed in the new generation");
    assert.match(srv.log(), /"handoff_untaken_closed"[^\n]*"names":\["journal"\]/);
    await waitFor(() => !alive(first.pid), "the old generation to exit", 15_000);
    await waitFor(() => flocksOn(srv.journal) === 0, "the lock to be released", 3000);
    const free = await new Promise<number>((resolve) => execFile("flock", ["-n", "-x", srv.journal, "true"], (err) => resolve(err ? 1 : 0)));
    assert.equal(free, 0, "another process may lock the file now");
  } finally {
    await srv.stop();
  }
});

test("a ready() that rejects: the upgrade fails with its reason, the old generation keeps the journal and serves with 0 failed requests; a later upgrade gets the journal", async (t) => {
  if (SKIP) return t.skip(SKIP);
  const srv = await serve();
  try {
    const first = await srv.whoami();
    const load = perilinkLoad("127.0.0.1", srv.port, 4, { maxMs: 60_000 });
    const watch = lockWatcher(srv.journal);
    await sleep(300);
    srv.control({ ready: "reject" });
    const r = await srv.upgrade();
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr.trim().split("\n").pop()!,
      /^perilink upgrade: Cannot upgrade: the new program could not start: Cannot start app .*handoff_app\.ts: its ready\(\) failed: journal check failed; the running process \(generation 1\) keeps serving \[PERILINK_UPGRADE_FAILED\] \[PERILINK_APP_NOT_READY\]$/,
    );
    const failedAt = journalLines(srv.journal).length;
    const now = await srv.status();
    assert.equal(now.pid, first.pid);
    assert.equal(now.generation, 1);
    assert.equal(now.accepting, true);
    await sleep(500);
    const report = await load.stop();
    const locking = await watch.stop();
    assertLoadClean(report, srv.log());
    assert.equal(locking.got, 0, "the lock never came free");
    const lines = journalLines(srv.journal);
    const rejected = lines.find((l) => l.startsWith("ready ") && l.includes("inherited=true"));
    assert.ok(rejected, "the new program had taken the journal when its ready() failed");
    assert.ok(lines.slice(failedAt).some((l) => l.startsWith("req ") && l.endsWith(`pid=${first.pid}`)), "the old generation writes on");
    assert.ok(openedBy(first.pid, srv.journal), "and holds it");

    srv.control({});
    const again = await srv.upgrade();
    assert.equal(again.code, 0, again.stderr);
    const second = await srv.whoami();
    assert.equal((second.received as { from: number }).from, first.pid);
    assert.ok(journalLines(srv.journal).some((l) => l.startsWith(`ready pid=${second.pid} inherited=true`)), "the next upgrade hands the journal on");
  } finally {
    await srv.stop();
  }
});

test("a ready() that never resolves: the new program gives up after limits.readyTimeoutMs and the upgrade rolls back", async (t) => {
  if (SKIP) return t.skip(SKIP);
  const srv = await serve({ limits: { readyTimeoutMs: 1500 } });
  try {
    const first = await srv.whoami();
    const load = perilinkLoad("127.0.0.1", srv.port, 4, { maxMs: 60_000 });
    srv.control({ ready: "hang" });
    const t0 = Date.now();
    const r = await srv.upgrade();
    const took = Date.now() - t0;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /Cannot upgrade: the new program could not start: Cannot start app .*: its ready\(\) did not settle within 1500 ms \(limits\.readyTimeoutMs\); the running process \(generation 1\) keeps serving \[PERILINK_UPGRADE_FAILED\] \[PERILINK_APP_NOT_READY\]/);
    // The message says which bound ended it; the time only has to be under the upgrade's own 15 s (it includes
    // starting the upgrade command and the new program under tsx: 12.9 s on a slow, loaded machine).
    assert.ok(took >= 1500 && took < 15_000, `gave up after ${took} ms, before the upgrade's own 15 s`);
    const now = await srv.status();
    assert.equal(now.pid, first.pid);
    assert.equal(now.upgrade, null);
    await sleep(300);
    assertLoadClean(await load.stop(), srv.log());
    assert.equal(flocksOn(srv.journal), 1);
  } finally {
    await srv.stop();
  }
});

/** Opens a TCP connection to `port` every few ms until stopped; counts those made and the refusals. */
function connectLoop(port: number): { stop(): Promise<{ connected: number; refused: number; other: string[] }> } {
  let stopping = false;
  const out = { connected: 0, refused: 0, other: [] as string[] };
  const loop = (async () => {
    while (!stopping) {
      await new Promise<void>((resolve) => {
        const s = net.connect({ host: "127.0.0.1", port });
        s.once("connect", () => {
          out.connected++;
          s.destroy();
          resolve();
        });
        s.once("error", (err: NodeJS.ErrnoException) => {
          if (err.code === "ECONNREFUSED") out.refused++;
          else out.other.push(err.code ?? err.message);
          resolve();
        });
      });
      await sleep(5);
    }
  })();
  return {
    stop: async () => {
      stopping = true;
      await loop;
      return out;
    },
  };
}

test("probation: a new generation that crashes right after it began accepting hands the port group back; no connection is refused and the old one never stopped serving its sessions", async (t) => {
  if (SKIP) return t.skip(SKIP);
  const srv = await serve({ probationMs: 4000 });
  try {
    const first = await srv.whoami();
    const load = perilinkLoad("127.0.0.1", srv.port, 4, { maxMs: 60_000 });
    const connects = connectLoop(srv.port);
    const watch = lockWatcher(srv.journal);
    await sleep(300);
    srv.control({ exitAfterMs: 800 });
    const r = await srv.upgrade();
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr.trim().split("\n").pop()!,
      /^perilink upgrade: Cannot upgrade: the new program exited with code 7 \d+ ms after it began accepting \(probationMs 4000\); the running process took its listening sockets back and keeps serving \[PERILINK_UPGRADE_FAILED\]$/,
    );
    const now = await srv.status();
    assert.equal(now.pid, first.pid);
    assert.equal(now.generation, 1);
    assert.equal(now.accepting, true);
    await sleep(500);
    const made = await connects.stop();
    const report = await load.stop();
    const locking = await watch.stop();
    assert.equal(made.refused, 0, `connections refused: ${JSON.stringify(made)}`);
    assert.deepEqual(made.other, []);
    assert.ok(made.connected > 50, `connections made: ${made.connected}`);
    assertLoadClean(report, srv.log());
    assert.equal(locking.got, 0, "the journal stayed locked");
    assert.ok(openedBy(first.pid, srv.journal), "the old generation holds the journal");
    assert.match(srv.log(), /"upgrade_rolled_back"/);
    t.diagnostic(`connections ${made.connected}, refused ${made.refused}; requests ${report.answered.size}, failed ${report.errors.length}`);

    srv.control({});
    const again = await srv.upgrade();
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await srv.whoami()).generation, 2, "a later upgrade succeeds");
  } finally {
    await srv.stop();
  }
});

test("probation: when the crashed generation's UDP port is still held for a while, the old one retries binding it and keeps its TCP sockets meanwhile: no connection is refused", async (t) => {
  if (SKIP) return t.skip(SKIP);
  const srv = await serve({ probationMs: 4000 });
  try {
    const first = await srv.whoami();
    const connects = connectLoop(srv.port);
    await sleep(300);
    // The new generation crashes within its probation, leaving its UDP socket to a process of its own for 1.5 s.
    srv.control({ exitAfterMs: 800, holdUdpMs: 1500, udpPort: srv.port });
    const r = await srv.upgrade();
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the running process took its listening sockets back and keeps serving \[PERILINK_UPGRADE_FAILED\]/);
    assert.match(srv.log(), /"rebind_retry"/, "binding the UDP port again failed at first");
    const now = await srv.status();
    assert.equal(now.pid, first.pid);
    assert.equal(now.accepting, true);
    await sleep(500);
    const made = await connects.stop();
    assert.equal(made.refused, 0, `connections refused: ${JSON.stringify(made)}`);
    assert.deepEqual(made.other, []);
    assert.ok(made.connected > 50, `connections made: ${made.connected}`);
    const id = await identifyUdp("127.0.0.1", srv.port, { timeoutMs: 2000 });
    assert.equal(id.serverId, now.serverId, "the UDP responder answers again");
    t.diagnostic(`connections ${made.connected}, refused ${made.refused}; rebind retries ${srv.log().split('"rebind_retry"').length - 1}`);
  } finally {
    await srv.stop();
  }
});

test("an upgrade asked of the new generation while the old one is on probation is refused (the old one may still take the ports back); once it settled, it goes", async (t) => {
  if (SKIP) return t.skip(SKIP);
  // Long enough that the nested `perilink upgrade` (a tsx process, seconds to start on a loaded machine) asks within it.
  const srv = await serve({ probationMs: 12_000 });
  try {
    const first = await srv.upgrade(); // generation 2; it reports once the probation passed
    // Start generation 3, then at once ask it for generation 4 while generation 2 is on probation.
    const second = srv.upgrade();
    await waitFor(async () => (await srv.status().catch(() => null))?.generation === 3, "generation 3 to accept", 30_000);
    const nested = await srv.upgrade();
    assert.equal(nested.code, 1, nested.stderr);
    assert.match(nested.stderr, /still on probation \(probationMs\).*\[PERILINK_UPGRADE_IN_PROGRESS\]/);
    assert.equal(first.code, 0, first.stderr);
    assert.equal((await second).code, 0);
    const later = await srv.upgrade();
    assert.equal(later.code, 0, later.stderr);
    assert.equal((await srv.whoami()).generation, 4);
  } finally {
    await srv.stop();
  }
});
