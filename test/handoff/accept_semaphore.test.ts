/**
 * The accept semaphore (S4, S5) between real processes: peers are child
 * processes running a small script that drives `AcceptSemaphore` over stdin
 * lines, so each property is checked across process boundaries, including
 * a holder killed with SIGKILL and a process of another user.
 *
 * Node.js on Linux only: the semaphore is used only where listening sockets
 * are handed over (not on Deno, which binds them again with SO_REUSEPORT),
 * and these tests rely on Linux (flock(1), uid switching).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { pathToFileURL } from "node:url";
import { AcceptSemaphore, SEMAPHORE_FILE } from "../../src/handoff/accept_semaphore.ts";
import { ensurePrivateDir } from "../../src/runtime/state_dir.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { REPO_ROOT } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fixtures.ts";
import { killPids } from "../helpers/pid_alive.ts";

const NOBODY = 65534;

function skipReason(): string | null {
  if (detectRuntime().handoff !== "inherit") return `${detectRuntime().name} binds the ports again on upgrade (SO_REUSEPORT) and uses no accept semaphore`;
  if (process.platform !== "linux") return "these tests use Linux process and permission semantics";
  return null;
}

/** Skipped from inside the body: on Deno the `skip` option keeps after() hooks from running. */
function skipped(t: { skip(message?: string): void }): boolean {
  const why = skipReason();
  if (why) t.skip(why);
  return why !== null;
}

/** Every child started here, and the peers' own children; SIGKILLed after the file. */
const children = new Set<ChildProcess>();
const grandchildren = new Set<number>();
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  killPids(grandchildren);
});

/** Holds the peer script for the whole file (an after() registered inside a test runs after that test). */
const scriptDir = mkdtempSync(path.join(os.tmpdir(), "perilink-sem-peer-"));
after(() => rmSync(scriptDir, { recursive: true, force: true }));

/** The peer script: drives an AcceptSemaphore of the state directory in argv[2] by stdin lines. */
let peerScript: string | null = null;
function peerScriptPath(): string {
  if (peerScript) return peerScript;
  peerScript = path.join(scriptDir, "peer.mts");
  const url = pathToFileURL(path.join(REPO_ROOT, "src/handoff/accept_semaphore.ts")).href;
  writeFileSync(
    peerScript,
    `import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { AcceptSemaphore } from ${JSON.stringify(url)};
const say = (s: string): void => void process.stdout.write(s + "\\n");
const sem = await AcceptSemaphore.forStateDir(process.argv[2]!);
say("ready " + process.pid);
// stdin keeps this process alive (the semaphore's socket is unref'd); its end (our death) ends it.
createInterface({ input: process.stdin }).on("line", async (line: string) => {
  const [cmd, arg] = line.split(" ");
  try {
    if (cmd === "try") say("try " + (await sem.tryAcquire()));
    else if (cmd === "acquire") { await sem.acquire(Number(arg)); say("acquired"); }
    else if (cmd === "release") { await sem.release(); say("released"); }
    else if (cmd === "spawn") {
      // A long-lived child started while holding: it must not inherit the hold.
      const c = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)"], { stdio: "ignore" });
      say("spawned " + c.pid);
    }
  } catch (err) {
    say("error " + ((err as { code?: string }).code ?? (err as Error).message));
  }
});
`,
  );
  return peerScript;
}

/** A process that uses the semaphore of `stateDir`, driven by lines. */
class Peer {
  readonly child: ChildProcess;
  #lines: string[] = [];
  #wake: (() => void) | null = null;
  #stderr = "";

  private constructor(child: ChildProcess) {
    this.child = child;
    let buf = "";
    child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      buf += s;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        this.#lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      this.#wake?.();
    });
    child.stderr!.setEncoding("utf8").on("data", (s: string) => (this.#stderr += s));
    child.once("exit", () => this.#wake?.());
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Starts a peer (`detached`: in its own session and process group, as setsid(1) does). */
  static start(stateDir: string, options: { detached?: boolean } = {}): Promise<Peer> {
    return Peer.spawn(["--import", "tsx", peerScriptPath(), stateDir], { cwd: REPO_ROOT, detached: options.detached ?? false });
  }

  /** Runs `node ARGS` and waits for its first line, `ready …`. */
  static async spawn(args: string[], options: SpawnOptions): Promise<Peer> {
    const child = spawn(process.execPath, args, { ...options, stdio: ["pipe", "pipe", "pipe"] });
    children.add(child);
    const peer = new Peer(child);
    const ready = await peer.line(10_000);
    assert.match(ready, /^ready \d+$/, "the peer starts");
    return peer;
  }

  send(cmd: string): void {
    this.child.stdin!.write(cmd + "\n");
  }

  /** The next line, or an error after `timeoutMs`. */
  async line(timeoutMs = 3000): Promise<string> {
    const got = await this.lineWithin(timeoutMs);
    if (got === null) throw new Error(`peer ${this.child.pid}: no line within ${timeoutMs} ms (exit ${this.child.exitCode ?? this.child.signalCode}); stderr: ${this.#stderr}`);
    return got;
  }

  /** The next line, or null when none comes within `ms`. */
  async lineWithin(ms: number): Promise<string | null> {
    const end = Date.now() + ms;
    while (this.#lines.length === 0) {
      const left = end - Date.now();
      if (left <= 0 || this.child.exitCode !== null || this.child.signalCode !== null) return null;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(t);
          this.#wake = null;
          resolve();
        };
      });
    }
    return this.#lines.shift()!;
  }

  async ask(cmd: string, timeoutMs = 3000): Promise<string> {
    this.send(cmd);
    return this.line(timeoutMs);
  }

  kill9(): Promise<void> {
    const exited = new Promise<void>((r) => (this.child.exitCode !== null || this.child.signalCode !== null ? r() : this.child.once("exit", () => r())));
    this.child.kill("SIGKILL");
    return exited;
  }
}

/** A fresh 0700 state directory, as `perilink serve` makes it. */
async function stateDir(): Promise<string> {
  const dir = path.join(tempDir("perilink-sem-"), "state");
  await ensurePrivateDir(dir);
  return dir;
}

/** Our own semaphore of `dir`, released after the file. */
async function ours(dir: string): Promise<AcceptSemaphore> {
  const sem = await AcceptSemaphore.forStateDir(dir);
  after(() => sem.release());
  return sem;
}

test("is exclusive: while another process holds it, tryAcquire() is false and acquire() times out", async (t) => {
  if (skipped(t)) return;
  const dir = await stateDir();
  const a = await Peer.start(dir);
  assert.equal(await a.ask("try"), "try true", "A takes the free semaphore");
  const sem = await ours(dir);
  assert.equal(await sem.tryAcquire(), false);
  assert.equal(sem.held, false);
  const t0 = Date.now();
  await assert.rejects(sem.acquire(200), (err: Error & { code?: string }) => {
    assert.equal(err.code, "PERILINK_SEMAPHORE_TIMEOUT");
    assert.match(err.message, /still held after 200 ms/);
    return true;
  });
  const waited = Date.now() - t0;
  assert.ok(waited >= 195 && waited < 1500, `acquire(200) gave up after ${waited} ms`);
  assert.equal(await a.ask("try"), "try true", "A still holds it (a second tryAcquire by the holder is true)");
  assert.equal(await sem.tryAcquire(), false, "and we still cannot take it");
});

test("is free again once the holder calls release(), for us and then not for the old holder", async (t) => {
  if (skipped(t)) return;
  const dir = await stateDir();
  const a = await Peer.start(dir);
  assert.equal(await a.ask("try"), "try true");
  const sem = await ours(dir);
  assert.equal(await sem.tryAcquire(), false);
  assert.equal(await a.ask("release"), "released");
  const t0 = Date.now();
  await sem.acquire(1000);
  assert.ok(Date.now() - t0 < 500, "taken at once after the release");
  assert.equal(sem.held, true);
  assert.equal(await a.ask("try"), "try false", "now A cannot take it");
  assert.match(await a.ask("acquire 100"), /^error PERILINK_SEMAPHORE_TIMEOUT$/);
  await sem.release();
  assert.equal(await a.ask("try"), "try true", "and after our release A can");
});

test("is freed by the kernel when the holder is killed with SIGKILL, even if the holder has a child still running", async (t) => {
  if (skipped(t)) return;
  const dir = await stateDir();
  const a = await Peer.start(dir);
  assert.equal(await a.ask("try"), "try true");
  // The server starts the next generation while it holds the semaphore: a child must not inherit the hold.
  const spawned = /^spawned (\d+)$/.exec(await a.ask("spawn"));
  assert.ok(spawned, "A started a child");
  const grandchild = Number(spawned[1]);
  grandchildren.add(grandchild);
  const sem = await ours(dir);
  assert.equal(await sem.tryAcquire(), false);
  await a.kill9();
  const t0 = Date.now();
  await sem.acquire(2000);
  const ms = Date.now() - t0;
  assert.ok(ms < 1000, `taken ${ms} ms after the holder died`);
  assert.equal(sem.held, true);
  process.kill(grandchild, 0); // A's child was still running all along
  process.kill(grandchild, "SIGKILL");
});

test("works between unrelated processes: a sibling waits for a holder in its own session, then takes over", async (t) => {
  if (skipped(t)) return;
  const dir = await stateDir();
  // A is started as setsid(1) would (own session and process group); B is a plain sibling.
  const a = await Peer.start(dir, { detached: true });
  const b = await Peer.start(dir);
  assert.equal(await a.ask("try"), "try true");
  assert.equal(await b.ask("try"), "try false", "B cannot take what A holds");
  b.send("acquire 5000");
  assert.equal(await b.lineWithin(300), null, "B is still waiting while A holds it");
  const t0 = Date.now();
  assert.equal(await a.ask("release"), "released");
  assert.equal(await b.line(2000), "acquired", "B takes it once A releases");
  assert.ok(Date.now() - t0 < 1000);
  assert.equal(await a.ask("try"), "try false", "and now A waits for B");
  // B dies holding it: A (in another session) gets it from the kernel.
  await b.kill9();
  a.send("acquire 2000");
  assert.equal(await a.line(3000), "acquired");
  // This process, unrelated to either holder's session, waits on A in turn.
  const sem = await ours(dir);
  assert.equal(await sem.tryAcquire(), false);
});

/** A directory other users can read, for scripts they run. */
function publicDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "perilink-sem-pub-"));
  chmodSync(dir, 0o755);
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function runAs(uid: number, script: string, args: string[], timeoutMs = 5000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [script, ...args], { uid, gid: uid, cwd: "/", stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${script} as uid ${uid}: still running after ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function notRoot(t: { skip(message?: string): void }): boolean {
  if (typeof process.getuid === "function" && process.getuid() === 0) return false;
  t.skip("needs root to start a process as uid 65534 (nobody)");
  return true;
}

test("other users can neither take nor hold it: the lock file is 0600 in a 0700 directory; another state directory has its own", async (t) => {
  if (skipped(t) || notRoot(t)) return;
  const dir = await stateDir();
  const a = await Peer.start(dir);
  assert.equal(await a.ask("try"), "try true");
  const lockFile = path.join(dir, SEMAPHORE_FILE);
  assert.equal(statSync(lockFile).mode & 0o777, 0o600, `${SEMAPHORE_FILE} is 0600`);
  assert.equal(statSync(lockFile).uid, process.getuid!());
  assert.equal(statSync(dir).mode & 0o777, 0o700, "in a 0700 directory");

  // What a process of another user (nobody) can do with it: open it (to lock it), list the
  // directory, or lock it with flock(1) as the semaphore itself does.
  const pub = publicDir();
  const probe = path.join(pub, "probe.mjs");
  writeFileSync(
    probe,
    `import fs from "node:fs";
import { spawnSync } from "node:child_process";
const out = { uid: process.getuid(), groups: process.getgroups() };
for (const [k, f] of [["open", () => fs.closeSync(fs.openSync(process.argv[2], "a"))], ["read", () => fs.readFileSync(process.argv[2])], ["dir", () => fs.readdirSync(process.argv[3])]]) {
  try { f(); out[k] = "ok"; } catch (e) { out[k] = e.code; }
}
const r = spawnSync("flock", ["-x", "-n", "-E", "75", process.argv[2], "true"], { encoding: "utf8" });
out.flock = { status: r.status, stderr: (r.stderr ?? "").trim(), error: r.error?.code };
console.log(JSON.stringify(out));
`,
  );
  chmodSync(probe, 0o644);
  const probeAs = async (): Promise<Record<string, unknown>> => {
    const r = await runAs(NOBODY, probe, [lockFile, dir]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };
  const held = await probeAs();
  assert.equal(held.uid, NOBODY);
  assert.ok(Array.isArray(held.groups) && !held.groups.includes(0), `no root group is kept: ${JSON.stringify(held.groups)}`);
  assert.equal(held.open, "EACCES", "nobody cannot open the lock file, so cannot flock it");
  assert.equal(held.read, "EACCES");
  assert.equal(held.dir, "EACCES", "nor list the state directory");
  const flockHeld = held.flock as { status: number | null; stderr: string };
  assert.notEqual(flockHeld.status, 0, "flock(1) as nobody does not get it");
  assert.match(flockHeld.stderr, /Permission denied/);

  // Free, it still cannot be taken (or held against us) by nobody; we take it at once.
  assert.equal(await a.ask("release"), "released");
  const free = await probeAs();
  assert.equal(free.open, "EACCES");
  assert.notEqual((free.flock as { status: number | null }).status, 0);
  const sem = await ours(dir);
  await sem.acquire(1000);
  assert.equal(sem.held, true);
  sem.release();

  // Another state directory: another lock file, an independent semaphore.
  const other = await stateDir();
  const mine = await ours(other);
  const same = await ours(dir);
  assert.notEqual(mine.path, same.path);
  assert.equal(await a.ask("try"), "try true", "A holds dir's semaphore again");
  assert.equal(await same.tryAcquire(), false, "dir's semaphore is held by A");
  assert.equal(await mine.tryAcquire(), true, "the other directory's semaphore is free all the same");
  const b = await Peer.start(other);
  assert.equal(await b.ask("try"), "try false", "and exclusive in its own right");
  assert.equal(await a.ask("release"), "released");
  assert.equal(await b.ask("try"), "try false", "releasing dir's semaphore does not free the other's");
  assert.equal(await same.tryAcquire(), true);
});
