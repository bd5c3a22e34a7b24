import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { UpgradeError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { detectRuntime } from "../runtime/runtime.ts";
import {
  DEFAULT_UPGRADE_TIMEOUT_MS,
  GENERATION_ENV,
  HANDOFF_ENV,
  HANDOFF_TIMEOUT_ENV,
  PORTS_ENV,
  isMessage,
  type DrainingGeneration,
  type NewToOld,
  type OldToNew,
} from "./handoff_protocol.ts";

/** How this process was started, so a new program can be started the same way. */
export interface RespawnSpec {
  execPath: string;
  execArgv: string[];
  /** The script now running (the bundle, or src/cli/main.ts). */
  script: string;
  /** Arguments after the script: `serve …`. */
  args: string[];
}

export interface UpgradeRequest {
  /** The new program; default: the script now running (a new bundle dropped in place is picked up). */
  program?: string;
  /** A new app module for the new program. */
  app?: string;
  /** How long the new program may take to become ready and to take over. */
  timeoutMs?: number;
}

export interface UpgradeResult {
  generation: number;
  pid: number;
  previousPid: number;
  ms: number;
}

/** What the upgrader needs from the server it replaces. */
export interface UpgradeHost {
  readonly generation: number;
  readonly log: Logger;
  /** The listening sockets to hand over, named (inherited_sockets.ts). */
  handoffSockets(): { name: string; fd: number }[];
  /** Stops accepting (closes this process's copies of the listeners) and releases the accept semaphore. */
  stopAccepting(): Promise<void>;
  /** Rollback after `stopAccepting()`: bind the port group again and take the semaphore. */
  resumeAccepting(): Promise<void>;
  /** Drains everything started here (GOAWAY, finish started requests, close). */
  drain(): Promise<void>;
  /** This process's drain progress, for the new process's `status`. */
  drainReport(): DrainingGeneration;
  /** Older generations this process still hears from. */
  olderGenerations(): DrainingGeneration[];
  /** The port the kernel chose for each `…:0` listen entry, by the entry's text. */
  resolvedPorts(): Record<string, number>;
}

/** Injectable seam for starting the new process (tests pass fakes). */
export type SpawnFn = (cmd: string, args: string[], options: SpawnOptions) => ChildProcess;

const SCRIPT_RE = /\.(mjs|cjs|js|ts|mts)$/;

/**
 * The old side of a seamless replacement (S4): starts the new program with
 * the listening sockets, hands over accept rights through the semaphore when
 * it is ready, then drains. At most one upgrade is under way at a time; any
 * failure before the new process accepts leaves this process serving.
 */
export class Upgrader {
  #host: UpgradeHost;
  #respawn: RespawnSpec;
  #spawn: SpawnFn;
  #busy: { pid: number | undefined; since: number } | null = null;
  #handedOver = false;
  #handedOverResolve!: () => void;
  #fail!: (err: Error) => void;
  /**
   * Resolves once this process has handed over and drained: time to exit.
   * Rejects when a rollback could not bind the ports again: the process can
   * no longer serve and should exit with an error (a supervisor restarts it).
   */
  readonly done: Promise<void> = new Promise((resolve, reject) => {
    this.#handedOverResolve = resolve;
    this.#fail = reject;
  });

  constructor(host: UpgradeHost, respawn: RespawnSpec, spawnFn: SpawnFn = spawn) {
    this.done.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
    this.#host = host;
    this.#respawn = respawn;
    this.#spawn = spawnFn;
  }

  /** `{ pid }` of the new process while an upgrade is under way, else null. */
  get inProgress(): { pid: number | undefined; since: number } | null {
    return this.#busy;
  }

  get handedOver(): boolean {
    return this.#handedOver;
  }

  async upgrade(req: UpgradeRequest = {}): Promise<UpgradeResult> {
    if (this.#handedOver) {
      throw new UpgradeError("PERILINK_UPGRADE_IN_PROGRESS", "Cannot upgrade: this process has already handed over and is draining; ask the new one");
    }
    if (this.#busy) {
      throw new UpgradeError(
        "PERILINK_UPGRADE_IN_PROGRESS",
        `Cannot upgrade: an upgrade is already under way (new pid ${this.#busy.pid ?? "starting"}, for ${Date.now() - this.#busy.since} ms); wait for it to finish`,
      );
    }
    const started = Date.now();
    this.#busy = { pid: undefined, since: started };
    try {
      return await this.#run(req, started);
    } finally {
      this.#busy = null;
    }
  }

  async #run(req: UpgradeRequest, started: number): Promise<UpgradeResult> {
    const log = this.#host.log;
    const timeoutMs = req.timeoutMs ?? DEFAULT_UPGRADE_TIMEOUT_MS;
    const program = path.resolve(req.program ?? this.#respawn.script);
    try {
      await fs.access(program);
    } catch {
      throw new UpgradeError("PERILINK_UPGRADE_FAILED", `Cannot upgrade: program ${program} does not exist; nothing was changed`);
    }
    const args = withApp(this.#respawn.args, req.app);
    const [cmd, argv] = SCRIPT_RE.test(program)
      ? [this.#respawn.execPath, [...this.#respawn.execArgv, program, ...args]]
      : [program, args];
    const mode = detectRuntime().handoff;
    // Deno cannot pass sockets: the new process binds the ports again with SO_REUSEPORT.
    const sockets = mode === "inherit" ? this.#host.handoffSockets() : [];
    if (mode === "reuseport") await warnWithoutMigration(log);
    const generation = this.#host.generation + 1;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      LISTEN_FDS: String(sockets.length),
      LISTEN_FDNAMES: sockets.map((s) => s.name).join(":"),
      [HANDOFF_ENV]: mode,
      [GENERATION_ENV]: String(generation),
      [HANDOFF_TIMEOUT_ENV]: String(timeoutMs),
      [PORTS_ENV]: JSON.stringify(this.#host.resolvedPorts()),
    };
    delete env.LISTEN_PID;
    log.info("upgrade_started", { program, generation, sockets: sockets.length, timeoutMs });

    let child: ChildProcess;
    try {
      // Its own process group, so a rollback also stops whatever a launcher script started.
      child = this.#spawn(cmd!, argv as string[], { stdio: ["ignore", "inherit", "inherit", ...sockets.map((s) => s.fd), "ipc"], env, detached: true });
    } catch (err) {
      throw new UpgradeError("PERILINK_UPGRADE_FAILED", `Cannot upgrade: cannot start ${program}: ${(err as Error).message}`, { cause: err });
    }
    this.#busy = { pid: child.pid, since: started };
    const steps = new ChildSteps(child, timeoutMs);

    // 1. The new program gets ready and asks for the service.
    const ready = await steps.next("transfer-request");
    if (ready !== true) {
      killGroup(child);
      const why = `Cannot upgrade: the new program ${ready}; the running process (generation ${this.#host.generation}) keeps serving`;
      log.warn("upgrade_rolled_back", { program, generation, why });
      throw new UpgradeError("PERILINK_UPGRADE_FAILED", why);
    }

    // 2. Accept rights pass through the semaphore: we stop, then the new one starts.
    await this.#host.stopAccepting();
    send(child, { t: "transfer-response" });
    const accepting = await steps.next("accepting");
    if (accepting !== true) {
      killGroup(child);
      await steps.exited(KILL_WAIT_MS); // its copies of the sockets must be gone before we bind the ports again
      try {
        await this.#host.resumeAccepting();
      } catch (err) {
        const why = `Cannot upgrade, and cannot serve any more: the new program ${accepting} after the handover began, and binding the ports again failed (${(err as Error).message})`;
        log.error("upgrade_rollback_failed", { program, generation, why });
        this.#fail(new UpgradeError("PERILINK_UPGRADE_FAILED", why, { cause: err }));
        throw new UpgradeError("PERILINK_UPGRADE_FAILED", why, { cause: err });
      }
      const why = `Cannot upgrade: the new program ${accepting} after the handover began; the running process bound its ports again and keeps serving (connections queued in between were lost)`;
      log.error("upgrade_rolled_back", { program, generation, why });
      throw new UpgradeError("PERILINK_UPGRADE_FAILED", why);
    }
    this.#handedOver = true;
    const ms = Date.now() - started;
    log.info("upgrade_handed_over", { generation, pid: child.pid, ms });

    // 3. Drain what was started here, telling the new process how it goes; then we are done.
    void this.#drain(child, steps);
    return { generation, pid: child.pid!, previousPid: process.pid, ms };
  }

  async #drain(child: ChildProcess, steps: ChildSteps): Promise<void> {
    const host = this.#host;
    const tell = (): void => send(child, { t: "draining", report: host.drainReport(), older: host.olderGenerations() });
    tell();
    const timer = setInterval(tell, DRAIN_REPORT_MS);
    try {
      await host.drain();
    } catch (err) {
      host.log.error("drain_failed", { error: err });
    } finally {
      clearInterval(timer);
    }
    send(child, { t: "drained", generation: host.generation });
    steps.dispose();
    if (child.connected) child.disconnect();
    child.unref();
    this.#handedOverResolve();
  }
}

/** How long a rollback waits for the killed new process to be gone. */
const KILL_WAIT_MS = 5000;

/** Kills the new process and anything it started (it leads its own process group). */
function killGroup(child: ChildProcess): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}

/** How often a draining process tells the new one how far it is. */
const DRAIN_REPORT_MS = 250;

/**
 * With SO_REUSEPORT each process has its own accept queue; when the old one
 * closes its listener, connections still queued there are reset unless the
 * kernel migrates them (net.ipv4.tcp_migrate_req=1, Linux 5.14+).
 */
async function warnWithoutMigration(log: Logger): Promise<void> {
  const v = await fs.readFile("/proc/sys/net/ipv4/tcp_migrate_req", "utf8").catch(() => "");
  if (v.trim() !== "1") {
    log.warn("upgrade_without_migration", {
      note: "net.ipv4.tcp_migrate_req is not 1: connections queued in this process's accept queue when it stops may be reset; run: sysctl -w net.ipv4.tcp_migrate_req=1",
    });
  }
}

function send(child: ChildProcess, msg: OldToNew): void {
  if (child.connected) child.send(msg, () => {});
}

/** Replaces or appends `--app` in `serve …` arguments. */
function withApp(args: string[], app: string | undefined): string[] {
  if (app === undefined) return [...args];
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--app") {
      i++;
      continue;
    }
    if (args[i]!.startsWith("--app=")) continue;
    out.push(args[i]!);
  }
  return [...out, "--app", app];
}

/** Waits for the child's next handoff message, its exit, or the timeout. */
class ChildSteps {
  #child: ChildProcess;
  #timeoutMs: number;
  #messages: NewToOld[] = [];
  #exit: string | null = null;
  #wake: (() => void) | null = null;

  constructor(child: ChildProcess, timeoutMs: number) {
    this.#child = child;
    this.#timeoutMs = timeoutMs;
    child.on("message", this.#onMessage);
    child.on("exit", this.#onExit);
    child.on("error", this.#onError);
  }

  #onMessage = (m: unknown): void => {
    this.#messages.push(m as NewToOld);
    this.#wake?.();
  };
  #onExit = (code: number | null, signal: string | null): void => {
    this.#exit ??= signal ? `was killed by ${signal}` : `exited with code ${code}`;
    this.#wake?.();
  };
  #onError = (err: Error): void => {
    this.#exit ??= `could not be started (${(err as NodeJS.ErrnoException).code ?? err.message})`;
    this.#wake?.();
  };

  /** true when the message came; else why not ("exited with code 1", "did not … within N ms"). */
  async next(t: NewToOld["t"]): Promise<true | string> {
    const deadline = Date.now() + this.#timeoutMs;
    for (;;) {
      const i = this.#messages.findIndex((m) => isMessage(m, t));
      if (i >= 0) {
        this.#messages.splice(i, 1);
        return true;
      }
      if (this.#exit) return `${this.#exit} before it was ${t === "accepting" ? "accepting" : "ready"} (see its log lines)`;
      const left = deadline - Date.now();
      if (left <= 0) return `was not ${t === "accepting" ? "accepting" : "ready"} within ${this.#timeoutMs} ms and was killed`;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          this.#wake = null;
          resolve();
        };
      });
    }
  }

  /** Resolves once the child has exited (at once if it has), or after `maxMs`. */
  exited(maxMs: number): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return Promise.resolve();
    return new Promise((r) => {
      const t = setTimeout(r, maxMs);
      this.#child.once("exit", () => {
        clearTimeout(t);
        r();
      });
    });
  }

  dispose(): void {
    this.#child.off("message", this.#onMessage);
    this.#child.off("exit", this.#onExit);
    this.#child.off("error", this.#onError);
  }
}
