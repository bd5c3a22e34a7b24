import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { controlRequest } from "../../../src/server/control_server.ts";
import type { UpgradeResult } from "../../../src/handoff/upgrader.ts";
import { sleep } from "../proc.ts";

/**
 * The servers of the handoff benchmark, each behind one interface: start it,
 * replace its process under load, stop it. perilink (`serve` + `upgrade`),
 * a naive restart of a standalone node:http server (SIGTERM, then start a new
 * one on the same port), and pm2 in cluster mode (`pm2 reload`).
 */

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const BUNDLE = path.join(ROOT, "dist/node20/perilink.mjs");
export const HTTP_APP = fileURLToPath(new URL("./http_app.mjs", import.meta.url));
const HTTP_SERVER = fileURLToPath(new URL("./http_server.mjs", import.meta.url));
const PM2_APP_NAME = "perilink-bench-http";

/** Epoch milliseconds with sub-millisecond resolution; the load child uses the same clock. */
export const now = (): number => performance.timeOrigin + performance.now();

/** One replacement of the serving process, as the command that did it saw it. */
export interface Replacement {
  ok: boolean;
  /** Wall time of the command: from its start to its exit (naive: SIGTERM to "listening"). */
  cmdMs: number;
  /** perilink only: the `ms` its upgrade answer carries, measured by the server. */
  serverMs: number | null;
  error: string | null;
}

export interface Service {
  readonly port: number;
  replace(): Promise<Replacement>;
  /** Stops every process this service started (including later generations) and removes its temp files. */
  stop(): Promise<void>;
  /** Facts for the results file (e.g. per-upgrade timelines from the server's log). */
  info(): Record<string, unknown>;
}

/** Builds the node20 bundle when it is missing or older than a file under src/. */
export function ensureFreshBundle(): string {
  const newest = (dir: string): number => {
    let t = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
    }
    return t;
  };
  if (!existsSync(BUNDLE) || statSync(BUNDLE).mtimeMs < newest(path.join(ROOT, "src"))) {
    const r = spawnSync("npm", ["run", "build", "--silent"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
    if (r.status !== 0 || !existsSync(BUNDLE)) throw new Error(`npm run build failed; ${BUNDLE} is missing`);
  }
  return BUNDLE;
}

interface CommandResult {
  code: number | null;
  ms: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its exit (bounded by `timeoutMs`, then SIGKILL); `ms` is from spawn to exit. */
export function runCommand(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<CommandResult> {
  return new Promise((resolve) => {
    const t0 = now();
    const child = spawn(cmd, args, { env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      resolve({ code: null, ms: now() - t0, stdout, stderr: `${stderr}${err.message}` });
    });
    child.once("exit", (code) => {
      const ms = now() - t0;
      clearTimeout(timer);
      // Output may still be in the pipes; a daemon that kept them open must not hold us up.
      const late = setTimeout(() => resolve({ code, ms, stdout, stderr }), 1000);
      child.once("close", () => {
        clearTimeout(late);
        resolve({ code, ms, stdout, stderr });
      });
    });
  });
}

/** Whether `pid` runs (a zombie does not). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Sends SIGTERM to `first`, waits up to `graceMs` for every pid of `pids` to end, then SIGKILLs the rest. */
async function endProcesses(first: number | null, pids: Iterable<number>, graceMs = 10_000): Promise<void> {
  if (first !== null && isAlive(first)) process.kill(first, "SIGTERM");
  const all = [...pids];
  const deadline = Date.now() + graceMs;
  while (all.some(isAlive) && Date.now() < deadline) await sleep(20);
  for (const pid of all) {
    if (!isAlive(pid)) continue;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
}

/** Resolves once `test` passes on the text read so far; rejects on exit or after `timeoutMs`. */
function waitForOutput(child: ChildProcess, text: () => string, test: (s: string) => boolean, what: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = child.stdout ?? child.stderr;
    const check = (): void => {
      if (test(text())) done(null);
    };
    const onExit = (code: number | null, signal: string | null): void => done(new Error(`${what}: the process exited (${signal ?? code}) first: ${text().slice(-500)}`));
    const timer = setTimeout(() => done(new Error(`${what}: not within ${timeoutMs} ms: ${text().slice(-500)}`)), timeoutMs);
    const done = (err: Error | null): void => {
      clearTimeout(timer);
      stream?.off("data", check);
      child.off("exit", onExit);
      if (err) reject(err);
      else resolve();
    };
    stream?.on("data", check);
    child.once("exit", onExit);
    check();
  });
}

/** One JSON log line of the server's, with its time as epoch ms. */
export interface LogEvent {
  t: number;
  event: string;
  fields: Record<string, unknown>;
}

/**
 * How a perilink upgrade is asked for: `cli` runs `perilink upgrade --json`
 * (a node process of its own); `control` sends the same request over the
 * control socket from this process (what the command does once it runs), to
 * tell the command's own start from the server's work.
 */
export type UpgradeTrigger = "cli" | "control";

/**
 * `perilink serve` (the bundle) on 127.0.0.1 with a fresh state directory;
 * `app` null for the built-in demo app (session mode); `workers` > 1 for a
 * manager and that many service processes (`--workers N`); `access` "keys"
 * for a server that admits only trusted keys (its own state directory's
 * client key among them: a load given `stateDir` uses it). Every later
 * generation inherits the first one's stderr, so the whole log is read here.
 */
export async function startPerilink(
  bundle: string,
  app: string | null,
  trigger: UpgradeTrigger = "cli",
  workers = 1,
  access: "open" | "keys" = "open",
  extra: { args?: string[]; onEvent?: (e: LogEvent) => void } = {},
): Promise<Service> {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-handoff-"));
  const args = [
    bundle,
    "serve",
    "--access",
    access,
    "--listen",
    "127.0.0.1:0",
    "--state-dir",
    stateDir,
    ...(app ? ["--app", app] : []),
    ...(workers > 1 ? ["--workers", String(workers)] : []),
    ...(extra.args ?? []),
  ];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
  let text = "";
  let partial = "";
  const events: LogEvent[] = [];
  child.stderr!.setEncoding("utf8").on("data", (s: string) => {
    text = (text + s).slice(-20_000);
    const lines = (partial + s).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      try {
        const rec = JSON.parse(line) as Record<string, unknown>;
        const e = { t: Date.parse(String(rec.time)), event: String(rec.event), fields: rec };
        events.push(e);
        extra.onEvent?.(e);
      } catch {
        // not a log line
      }
    }
  });
  const pids = new Set<number>([child.pid!]);
  let current: number = child.pid!;
  const stop = async (): Promise<void> => {
    await endProcesses(current, pids);
    rmSync(stateDir, { recursive: true, force: true });
  };
  try {
    await waitForOutput(child, () => text, () => events.some((e) => e.event === "server_started" && e.fields.worker === undefined), "perilink serve to start", 20_000);
  } catch (err) {
    await stop();
    throw err;
  }
  const added = events.find((e) => e.event === "listener_added");
  const port = Number(added?.fields.port);

  return {
    port,
    async replace() {
      if (trigger === "control") {
        const t0 = now();
        try {
          const out = (await controlRequest(stateDir, { op: "upgrade", timeoutMs: 20_000 }, 45_000)) as UpgradeResult;
          pids.add(out.pid);
          current = out.pid;
          return { ok: true, cmdMs: now() - t0, serverMs: out.ms, error: null };
        } catch (err) {
          return { ok: false, cmdMs: now() - t0, serverMs: null, error: `upgrade over the control socket: ${(err as Error).message}` };
        }
      }
      const r = await runCommand(process.execPath, [bundle, "upgrade", "--state-dir", stateDir, "--json", "--timeout", "20000"], { timeoutMs: 60_000 });
      if (r.code !== 0) return { ok: false, cmdMs: r.ms, serverMs: null, error: `perilink upgrade exited ${r.code}: ${r.stderr.trim()}` };
      const out = JSON.parse(r.stdout) as { generation: number; pid: number; ms: number };
      pids.add(out.pid);
      current = out.pid;
      return { ok: true, cmdMs: r.ms, serverMs: out.ms, error: null };
    },
    stop,
    info() {
      return { stateDir, timelines: upgradeTimelines(events), warnings: events.filter((e) => e.fields.level === "warn" || e.fields.level === "error").map((e) => e.fields) };
    },
  };
}

/**
 * Per upgrade, from the servers' log lines (ms resolution): `bootMs` from
 * "upgrade_started" (old process, before spawning) to the new process's
 * "listener_adopted" (node started, bundle, config, identity and app loaded,
 * sockets adopted); `takeoverMs` from there to "upgrade_handed_over" (transfer
 * request, old stops accepting, accept semaphore, new starts accepting). The
 * `...At` fields are the same instants as epoch ms.
 */
function upgradeTimelines(events: LogEvent[]): Record<string, number>[] {
  const out: Record<string, number>[] = [];
  for (const s of events.filter((e) => e.event === "upgrade_started")) {
    const generation = Number(s.fields.newGeneration);
    const adopted = events.find((e) => e.event === "listener_adopted" && e.t >= s.t);
    const handed = events.find((e) => e.event === "upgrade_handed_over" && Number(e.fields.newGeneration) === generation);
    if (!adopted || !handed) continue;
    out.push({
      generation,
      bootMs: adopted.t - s.t,
      takeoverMs: handed.t - adopted.t,
      ms: Number(handed.fields.ms),
      startedAt: s.t,
      adoptedAt: adopted.t,
      handedOverAt: handed.t,
    });
  }
  return out;
}

/** http_server.mjs on 127.0.0.1:`port`; resolves once it prints "listening". */
async function startStandalone(port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [HTTP_SERVER], { env: { ...process.env, PORT: String(port), HOST: "127.0.0.1" }, stdio: ["ignore", "pipe", "inherit"] });
  let text = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (text += s));
  try {
    await waitForOutput(child, () => text, (s) => s.includes("listening"), "http_server.mjs to listen", 20_000);
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  return child;
}

/** Waits for `child` to exit, SIGKILLing it after `graceMs`. */
async function exited(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once("exit", () => r()));
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await gone;
  clearTimeout(timer);
}

/**
 * The naive restart: the same node:http app run directly; a replacement sends
 * SIGTERM (the app stops accepting and finishes what it started), waits for
 * the exit, then starts a new process on the same port and waits for it to listen.
 */
export async function startNaive(port: number): Promise<Service> {
  let child = await startStandalone(port);
  const pids = new Set<number>([child.pid!]);
  return {
    port,
    async replace() {
      const t0 = now();
      try {
        child.kill("SIGTERM");
        await exited(child, 10_000);
        child = await startStandalone(port);
        pids.add(child.pid!);
        return { ok: true, cmdMs: now() - t0, serverMs: null, error: null };
      } catch (err) {
        return { ok: false, cmdMs: now() - t0, serverMs: null, error: (err as Error).message };
      }
    },
    async stop() {
      await endProcesses(child.exitCode === null ? child.pid! : null, pids);
    },
    info: () => ({}),
  };
}

/** One GET to 127.0.0.1:`port`; true on a 2xx answer. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/ping", agent: false, headers: { connection: "close" } }, (res) => {
      res.resume();
      res.on("end", () => resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300));
    });
    req.setTimeout(2000, () => req.destroy());
    req.on("error", () => resolve(false));
  });
}

/** The pm2 command (from node_modules), or null when pm2 is not installed. */
export function pm2Bin(): string | null {
  try {
    const pkg = createRequire(import.meta.url).resolve("pm2/package.json");
    const bin = path.join(path.dirname(pkg), "bin", "pm2");
    return existsSync(bin) ? bin : null;
  } catch {
    return null;
  }
}

/**
 * pm2 in cluster mode with `instances` workers of http_server.mjs on
 * 127.0.0.1:`port`; a replacement is `pm2 reload`. Everything pm2 keeps goes
 * to a private PM2_HOME in a temp directory; `stop()` runs `pm2 kill`. pm2
 * checks for a new version over the network the first time it meets a
 * PM2_HOME: the "touch" file it writes after that check is created beforehand,
 * and PM2_DISABLE_VERSION_CHECK stops the daemon's daily check, so pm2 sends
 * nothing off this machine.
 */
export async function startPm2(port: number, instances: number): Promise<Service> {
  const bin = pm2Bin();
  if (!bin) throw new Error("pm2 is not installed (it is a devDependency: run npm ci)");
  const home = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-pm2-"));
  writeFileSync(path.join(home, "touch"), String(Date.now()));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PM2_HOME: home,
    PM2_DISABLE_VERSION_CHECK: "true",
    PORT: String(port),
    HOST: "127.0.0.1",
  };
  const pm2 = (args: string[], timeoutMs = 60_000): Promise<CommandResult> => runCommand(process.execPath, [bin, ...args], { env, timeoutMs });
  const stop = async (): Promise<void> => {
    const r = await pm2(["kill"], 30_000);
    if (r.code !== 0) process.stderr.write(`pm2 kill exited ${r.code}: ${r.stderr.trim()}\n`);
    rmSync(home, { recursive: true, force: true });
  };
  try {
    const started = await pm2(["start", HTTP_SERVER, "--name", PM2_APP_NAME, "-i", String(instances)]);
    if (started.code !== 0) throw new Error(`pm2 start exited ${started.code}: ${started.stderr.trim() || started.stdout.trim()}`);
    const deadline = Date.now() + 20_000;
    while (!(await ping(port))) {
      if (Date.now() > deadline) throw new Error(`pm2's app did not answer on 127.0.0.1:${port} within 20 s`);
      await sleep(50);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const version = (JSON.parse(readFileSync(path.join(path.dirname(bin), "..", "package.json"), "utf8")) as { version: string }).version;
  return {
    port,
    async replace() {
      const r = await pm2(["reload", PM2_APP_NAME]);
      return r.code === 0
        ? { ok: true, cmdMs: r.ms, serverMs: null, error: null }
        : { ok: false, cmdMs: r.ms, serverMs: null, error: `pm2 reload exited ${r.code}: ${r.stderr.trim()}` };
    },
    stop,
    info: () => ({ pm2: version, instances, home }),
  };
}
