import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { promises as fs } from "node:fs";
import type net from "node:net";
import path from "node:path";
import { UpgradeError, type ErrorCode } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { ChildSteps } from "./child_steps.ts";
import { handoffPlan, warnWithoutMigration } from "./handoff_mode.ts";
import type { UpgradeDriver, UpgradeRequest, UpgradeResult } from "../server/server_handoff.ts";
import type { ParkedSocket } from "../server/listener_sockets.ts";
import { parkThrough } from "./park_through.ts";
import {
  APP_FD_PREFIX,
  APP_STATE_ENV,
  DEFAULT_UPGRADE_TIMEOUT_MS,
  GENERATION_ENV,
  HANDOFF_ENV,
  HANDOFF_TIMEOUT_ENV,
  DRAINING_PIDS_ENV,
  PORTS_ENV,
  isMessage,
  type AppStates,
  type DrainingGeneration,
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

export type { UpgradeRequest, UpgradeResult };

/** What the upgrader needs from the server it replaces. */
export interface UpgradeHost {
  readonly generation: number;
  readonly log: Logger;
  /** The listening sockets to hand over, named (inherited_sockets.ts). */
  handoffSockets(): { name: string; fd: number }[];
  /**
   * Stops accepting (closes this process's copies of the listeners) and
   * releases the accept semaphore. With `keep`, the TCP sockets stay open
   * here unwatched (a copy of each from `keep`), for a rollback to take back.
   */
  stopAccepting(keep?: (server: net.Server) => Promise<ParkedSocket>): Promise<void>;
  /** Rollback after `stopAccepting()`: accept on the kept sockets, or bind the port group again, and take the semaphore. True when it took kept sockets back. */
  resumeAccepting(): Promise<boolean | void>;
  /** The new process passed its probation: close the kept sockets. */
  closeKept?(): void;
  /** After the new process accepts, how long this one can still take the port group back if it dies (`probationMs`; 0: not at all). */
  readonly probationMs?: number;
  /** Drains everything started here (GOAWAY, finish started requests, close). */
  drain(): Promise<void>;
  /** This process's drain progress, for the new process's `status`. */
  drainReport(): DrainingGeneration;
  /** Peers vouched for (admission.ts), for the new process. */
  vouchedPeers?(): [string, number][];
  /** The totals the new process continues (server_stats.ts). */
  counters?(): Record<string, unknown>;
  /** Older generations this process still hears from. */
  olderGenerations(): DrainingGeneration[];
  /** The port the kernel chose for each `…:0` listen entry, by the entry's text. */
  resolvedPorts(): Record<string, number>;
  /** The descriptors the app put for the next generation (docs/apps.md); throws when one is no longer open. */
  appDescriptors?(): { name: string; fd: number }[];
  /** The state the app put for the next generation (JSON text, or null; a group's by slot). */
  appState?(): AppStates | Promise<AppStates>;
  /** The ids of this process's service processes (`--workers`), which drain while the new group starts. */
  servicePids?(): number[];
}

/** Starts the new process. */
export type SpawnFn = (cmd: string, args: string[], options: SpawnOptions) => ChildProcess;

/** The OS side effects of the old side of a handoff (tests pass fakes). */
export interface UpgraderSeams {
  spawn: SpawnFn;
  /** Kills the new process and whatever it started (it leads its own process group). */
  killGroup: (child: ChildProcess) => void;
}

const SCRIPT_RE = /\.(mjs|cjs|js|ts|mts)$/;

/**
 * The old side of a seamless replacement (S4): starts the new program with
 * the listening sockets, hands over accept rights through the semaphore when
 * it is ready, then drains. At most one upgrade is under way at a time; any
 * failure before the new process accepts leaves this process serving.
 */
export class Upgrader implements UpgradeDriver {
  #host: UpgradeHost;
  #respawn: RespawnSpec;
  #seams: UpgraderSeams;
  #busy: { pid: number | undefined; since: number } | null = null;
  /** The upgrade under way (settles once it has handed over, failed or been cancelled). */
  #running: Promise<UpgradeResult> | null = null;
  /** Its wait on the new process, while there is one. */
  #steps: ChildSteps | null = null;
  /** Set by `cancel()`: why the upgrade under way must stop. */
  #cancelled: string | null = null;
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

  constructor(host: UpgradeHost, respawn: RespawnSpec, seams: Partial<UpgraderSeams> = {}) {
    this.done.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
    this.#host = host;
    this.#respawn = respawn;
    this.#seams = { spawn, killGroup, ...seams };
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
    this.#cancelled = null;
    const running = this.#run(req, started);
    this.#running = running;
    try {
      return await running;
    } finally {
      this.#busy = null;
      this.#running = null;
    }
  }

  /**
   * Stops the upgrade under way, if it has not handed over yet: the new
   * process group is killed and `upgrade()` rejects with
   * PERILINK_UPGRADE_CANCELLED. This process does not bind its ports again
   * (the caller is shutting down). Resolves once the upgrade has ended.
   */
  async cancel(why: string): Promise<void> {
    const running = this.#running;
    if (!running || this.#handedOver) return;
    this.#cancelled ??= why;
    this.#steps?.cancel(why);
    await running.then(
      () => {},
      () => {},
    );
  }

  /**
   * The handoff, top to bottom: start the new program; wait until it is
   * ready; stop accepting and let it take over; wait until it accepts, and
   * through its probation. Every way out before the drain goes through
   * `#abandon()`.
   */
  async #run(req: UpgradeRequest, started: number): Promise<UpgradeResult> {
    const log = this.#host.log;
    const timeoutMs = req.timeoutMs ?? DEFAULT_UPGRADE_TIMEOUT_MS;
    const program = path.resolve(req.program ?? this.#respawn.script);
    try {
      await fs.access(program);
    } catch {
      throw upgradeFailed(`Cannot upgrade: program ${program} does not exist; nothing was changed`);
    }
    const args = withApp(this.#respawn.args, req.app);
    const [cmd, argv] = SCRIPT_RE.test(program)
      ? [this.#respawn.execPath, [...this.#respawn.execArgv, program, ...args]]
      : [program, args];
    const plan = handoffPlan();
    const mode = plan.mode;
    const sockets = plan.passSockets ? this.#host.handoffSockets() : [];
    if (!plan.passSockets) await warnWithoutMigration(log);
    let appFds: { name: string; fd: number }[];
    try {
      appFds = plan.passSockets ? (this.#host.appDescriptors?.() ?? []) : [];
    } catch (err) {
      throw upgradeFailed(`Cannot upgrade: the app's handoff: ${(err as Error).message}; nothing was changed`, { cause: err });
    }
    const generation = this.#host.generation + 1;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      LISTEN_FDS: String(sockets.length + appFds.length),
      LISTEN_FDNAMES: [...sockets.map((s) => s.name), ...appFds.map((a) => APP_FD_PREFIX + a.name)].join(":"),
      [APP_STATE_ENV]: "1",
      [HANDOFF_ENV]: mode,
      [GENERATION_ENV]: String(generation),
      [HANDOFF_TIMEOUT_ENV]: String(timeoutMs),
      [PORTS_ENV]: JSON.stringify(this.#host.resolvedPorts()),
    };
    delete env.LISTEN_PID;
    const pids = this.#host.servicePids?.() ?? [];
    if (pids.length > 0) env[DRAINING_PIDS_ENV] = pids.join(",");
    else delete env[DRAINING_PIDS_ENV];
    if (this.#cancelled) {
      throw new UpgradeError("PERILINK_UPGRADE_CANCELLED", `Cannot upgrade: ${this.#cancelled}; the new program was not started`);
    }
    log.info("upgrade_started", { program, newGeneration: generation, sockets: sockets.length, appDescriptors: appFds.map((a) => a.name), timeoutMs });

    let child: ChildProcess;
    try {
      // Its own process group, so a rollback also stops whatever a launcher script started.
      child = this.#seams.spawn(cmd!, argv as string[], { stdio: ["ignore", "inherit", "inherit", ...sockets.map((s) => s.fd), ...appFds.map((a) => a.fd), "ipc"], env, detached: true });
    } catch (err) {
      throw upgradeFailed(`Cannot upgrade: cannot start ${program}: ${(err as Error).message}`, { cause: err });
    }
    this.#busy = { pid: child.pid, since: started };
    const steps = new ChildSteps(child, timeoutMs);
    this.#steps = steps;
    if (this.#cancelled) steps.cancel(this.#cancelled);
    const failed = { program, generation, child, steps };
    let ms = 0;
    // Asked for just before the new app's ready(): the state as late as it can be.
    // Answered once: a new program that asks again and again gets nothing more (each answer may be 64 KiB).
    let stateSent = false;
    const onAppState = (m: unknown): void => {
      if (!stateSent && isMessage(m, "app-state-request")) {
        stateSent = true;
        const answer = (states: AppStates): void => send(child, { t: "app-state", ...states });
        Promise.resolve(this.#host.appState?.() ?? { state: null }).then(answer, (err: unknown) => {
          this.#host.log.warn("app_state_failed", { error: err, note: "the new program's app starts without a state" });
          answer({ state: null });
        });
      }
    };
    child.on("message", onAppState);
    try {
      // 1. The new program gets ready and asks for the service.
      const ready = await steps.next("transfer-request");
      if (ready !== true) return await this.#abandon(failed, ready, false);

      // 2. Accept rights pass through the semaphore: we stop, then the new one starts. With a
      // probation we keep the TCP sockets open (a copy by way of the new process), unwatched.
      const probationMs = Math.min(this.#host.probationMs ?? 0, timeoutMs);
      const park = probationMs > 0 && plan.passSockets && steps.taken("transfer-request")?.park === true;
      await this.#host.stopAccepting(park ? (server) => parkThrough(child, server, PARK_TIMEOUT_MS) : undefined);
      if (steps.cancelled) return await this.#abandon(failed, steps.cancelled, true);
      send(child, { t: "transfer-response", vouched: this.#host.vouchedPeers?.() ?? [], counters: this.#host.counters?.() ?? {} });
      const accepting = await steps.next("accepting");
      if (accepting !== true) return await this.#abandon(failed, `${accepting} after the handover began`, true);
      ms = Date.now() - started;

      // 3. Probation: this process still serves its sessions; should the new one crash now, we accept again.
      if (park) {
        const crashed = await steps.crashedWithin(probationMs);
        if (crashed) return await this.#abandon(failed, `${crashed} ${Date.now() - started - ms} ms after it began accepting (probationMs ${probationMs})`, true);
        this.#host.closeKept?.();
      }
    } finally {
      this.#steps = null;
      child.off("message", onAppState);
    }
    this.#handedOver = true;
    log.info("upgrade_handed_over", { newGeneration: generation, newPid: child.pid, ms });

    // 4. Drain what was started here, telling the new process how it goes; then we are done.
    void this.#drain(child, steps);
    return { generation, pid: child.pid!, previousPid: process.pid, ms };
  }

  /**
   * The new process failed, timed out or the upgrade was cancelled: kill its
   * process group and wait until it is gone; then, if this process had
   * already stopped accepting and is not shutting down, bind the ports again.
   * Always throws.
   */
  async #abandon(
    f: { program: string; generation: number; child: ChildProcess; steps: ChildSteps },
    why: string,
    stoppedAccepting: boolean,
  ): Promise<never> {
    const log = this.#host.log;
    // One that said why it cannot start is exiting: its last log lines come first.
    if (f.steps.startFailed) await f.steps.exited(START_FAILED_EXIT_MS);
    this.#seams.killGroup(f.child);
    // Its copies of the sockets must be gone before we bind the ports again or report it stopped.
    await f.steps.exited(KILL_WAIT_MS);
    f.steps.dispose();
    if (f.steps.cancelled) {
      const msg = `Cannot upgrade: ${why}; the new program (pid ${f.child.pid ?? "none"}) was stopped`;
      log.warn("upgrade_cancelled", { program: f.program, newGeneration: f.generation, why: msg });
      throw new UpgradeError("PERILINK_UPGRADE_CANCELLED", msg);
    }
    if (!stoppedAccepting) {
      const msg = `Cannot upgrade: the new program ${why}; the running process (generation ${this.#host.generation}) keeps serving`;
      log.warn("upgrade_rolled_back", { program: f.program, newGeneration: f.generation, why: msg });
      throw upgradeFailed(msg, { reason: f.steps.failedCode });
    }
    let tookBack: boolean | void;
    try {
      tookBack = await this.#host.resumeAccepting();
    } catch (err) {
      const msg = `Cannot upgrade, and cannot serve any more: the new program ${why}, and binding the ports again failed (${(err as Error).message})`;
      log.error("upgrade_rollback_failed", { program: f.program, newGeneration: f.generation, why: msg });
      const failed = upgradeFailed(msg, { cause: err });
      this.#fail(failed);
      throw failed;
    }
    const how = tookBack ? "took its listening sockets back" : "bound its ports again";
    const msg = `Cannot upgrade: the new program ${why}; the running process ${how} and keeps serving${tookBack ? "" : " (connections queued in between were lost)"}`;
    log.error("upgrade_rolled_back", { program: f.program, newGeneration: f.generation, why: msg });
    throw upgradeFailed(msg, { reason: f.steps.failedCode });
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
    send(child, { t: "drained", generation: host.generation, counters: host.counters?.() ?? {} });
    steps.dispose();
    if (child.connected) child.disconnect();
    child.unref();
    this.#handedOverResolve();
  }
}

/** How long a listening socket's handle may take to come back from the new process (`#park`). */
const PARK_TIMEOUT_MS = 2000;

/** How long a rollback waits for the killed new process to be gone. */
const KILL_WAIT_MS = 5000;
/** How long a new process that said it cannot start has to exit by itself before it is killed. */
const START_FAILED_EXIT_MS = 1000;

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

/** The error of an upgrade that did not happen or was rolled back (`PERILINK_UPGRADE_FAILED`). */
function upgradeFailed(message: string, options?: { cause?: unknown; reason?: ErrorCode | undefined }): UpgradeError {
  return new UpgradeError("PERILINK_UPGRADE_FAILED", message, options);
}
