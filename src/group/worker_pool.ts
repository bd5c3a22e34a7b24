import type { ChildProcess } from "node:child_process";
import type { Logger } from "../logger.ts";
import { LatencyHistogram } from "../open_metrics.ts";
import type { WorkerRange } from "../server/config.ts";
import type { ManagerToWorker, WorkerStats, WorkerToManager } from "./group_protocol.ts";
import { pidAlive } from "../handoff/takeover.ts";

/** One service process of the group, as the manager sees it. */
export class Worker {
  readonly slot: number;
  child: ChildProcess;
  state: "starting" | "ready" | "draining" | "failed" = "starting";
  stats: WorkerStats = { sessions: 0, inflight: 0, requests: 0, connections: 0 };
  /** Connections passed to it (or accepted by it) that have not closed yet. */
  conns = 0;
  /** Times this slot's process was started again after it died. */
  restarts = 0;
  /** When `conns` last became 0 (ms). */
  idleSince = Date.now();
  /** Exit times of recent crashes (ms), for the backoff and the crash-loop verdict. */
  crashes: number[] = [];

  constructor(slot: number, child: ChildProcess) {
    this.slot = slot;
    this.child = child;
  }

  get pid(): number | null {
    return this.child.pid ?? null;
  }
}

/** What the pool tells its owner (the dispatch). */
export interface PoolEvents {
  message(w: Worker, msg: WorkerToManager, handle: unknown): void;
  ready(w: Worker): void;
  /** The process ended (crash, retirement or drain); its connections are gone. */
  exit(w: Worker): void;
  /** A rolling start is over (every process of the group started, or it stopped waiting). */
  rolled?(): void;
}

/** Restarts wait BACKOFF_BASE_MS × 2^(recent crashes − 1), at most BACKOFF_MAX_MS. */
export const BACKOFF_BASE_MS = 100;
export const BACKOFF_MAX_MS = 5000;
/** This many crashes of one slot within the window is a crash loop: reported, not restarted. */
export const CRASH_LOOP_COUNT = 5;
export const CRASH_LOOP_WINDOW_MS = 30_000;
/** How long a service process may take to load and say it is ready. */
export const WORKER_START_TIMEOUT_MS = 30_000;
/** How often a rolling start looks whether the old group's processes have exited. */
export const ROLL_POLL_MS = 50;

/**
 * A rolling start (an upgrade of a group, `limits.upgradeSurge`): the old
 * group's service processes (children of `parentPid`, the old manager) drain
 * beside this one; this pool runs at most `surge` more than have exited, so
 * that the two groups together hold about one group's memory. `windowMs`
 * after `handedOver()` it stops waiting.
 */
export interface RollingStart {
  drainingPids: readonly number[];
  parentPid: number;
  surge: number;
  windowMs: number;
}

/**
 * The manager's service processes (S5): starts `range.min` of them, restarts
 * one that dies (with backoff; a crash loop is reported and left stopped),
 * adds one while all are busy (up to `range.max`) and retires one that stays
 * idle above `range.min`. It knows nothing of connections: the dispatch does.
 */
/** The service processes' counters a group adds up (the manager counts probes and connections itself). */
export const SUMMED = ["requests", "requestErrors", "requestTimeouts", "messages", "sessionsAccepted", "sessionsRefused", "accessDenied", "protocolErrors", "sessionsCutOff", "sessionsEvicted", "bytesIn", "bytesOut", "channelsOpen", "rawConnections"] as const;

export class WorkerPool {
  /** Where the next `freest()` starts looking, so equally free workers take turns. */
  #next = 0;
  #range: WorkerRange;
  #spawn: (slot: number) => ChildProcess;
  #log: Logger;
  #events: PoolEvents;
  #idleMs: number;
  #workers: Worker[] = [];
  /** What service processes that have exited counted, so the group's totals never go down. */
  readonly retired = { counters: {} as Record<string, number>, latency: new LatencyHistogram(), refusedBy: {} as Record<string, number> };
  #stopping = false;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #idleTimer: ReturnType<typeof setInterval> | null = null;
  /** While a rolling start waits for the old group: the old processes still running, and how many have exited. */
  #roll: { pids: Set<number>; parent: number; exited: number; surge: number; windowMs: number; deadlineMs: number; timer: ReturnType<typeof setInterval> | null } | null = null;

  constructor(opts: { range: WorkerRange; idleMs: number; spawn: (slot: number) => ChildProcess; log: Logger; events: PoolEvents; rolling?: RollingStart }) {
    const r = opts.rolling;
    if (r && r.drainingPids.length > 0) this.#roll = { pids: new Set(r.drainingPids), parent: r.parentPid, exited: 0, surge: Math.max(1, r.surge), windowMs: r.windowMs, deadlineMs: Infinity, timer: null };
    this.#range = opts.range;
    this.#idleMs = opts.idleMs;
    this.#spawn = opts.spawn;
    this.#log = opts.log;
    this.#events = opts.events;
  }

  /** Every slot, failed ones included (status lists them). */
  /** Adds an exited service process's last report to the retired totals. */
  retire(stats: WorkerStats): void {
    const into = this.retired.counters;
    into.requests = (into.requests ?? 0) + stats.requests;
    for (const k of SUMMED) if (k !== "requests") into[k] = (into[k] ?? 0) + (stats.counters?.[k] ?? 0);
    this.retired.latency.add(stats.latency);
    for (const [k, v] of Object.entries(stats.refusedBy ?? {})) if (typeof v === "number" && v >= 0) this.retired.refusedBy[k] = (this.retired.refusedBy[k] ?? 0) + v;
  }

  get workers(): readonly Worker[] {
    return this.#workers;
  }

  ready(): Worker[] {
    return this.#workers.filter((w) => w.state === "ready");
  }

  /**
   * The ready service process with the most free slots of `slots` (ties go
   * round the pool, from after the last one picked); null when none has one.
   */
  freest(slots: number): Worker | null {
    const ready = this.ready();
    let best: Worker | null = null;
    for (let i = 0; i < ready.length; i++) {
      const w = ready[(this.#next + i) % ready.length]!;
      if (w.conns >= slots || !w.child.connected) continue;
      if (!best || w.conns < best.conns) best = w;
    }
    if (best) this.#next = (ready.indexOf(best) + 1) % Math.max(ready.length, 1);
    return best;
  }

  /**
   * Starts `range.min` service processes (in a rolling start, as many as it
   * allows now, the rest as the old group's exit) and resolves once those
   * are ready; throws if one cannot start.
   */
  async start(): Promise<void> {
    const started = Array.from({ length: Math.min(this.#range.min, this.#allowed()) }, () => this.#add());
    await Promise.all(started.map((w) => this.#whenReady(w)));
    if (this.#roll) {
      this.#log.info("group_rolling", { drainingPids: [...this.#roll.pids], surge: this.#roll.surge, started: started.length, min: this.#range.min });
      this.#roll.timer = setInterval(() => this.#rollOn(), ROLL_POLL_MS);
      this.#roll.timer.unref?.();
    }
    if (this.#range.max > this.#range.min) {
      this.#idleTimer = setInterval(() => this.#retireIdle(), Math.min(1000, Math.max(100, this.#idleMs / 4)));
      this.#idleTimer.unref?.();
    }
  }

  /** The new group took the sockets, so the old one drains now: a rolling start waits `windowMs` more at most. */
  handedOver(): void {
    if (this.#roll && this.#roll.deadlineMs === Infinity) this.#roll.deadlineMs = Date.now() + this.#roll.windowMs; // the first time: a rescan's listening() comes again
  }

  /** All ready ones are busy: add one if the range allows and none is starting. */
  grow(): void {
    if (this.#stopping) return;
    const live = this.#live();
    if (live.length >= Math.min(this.#range.max, this.#allowed()) || live.some((w) => w.state === "starting")) return;
    const w = this.#add();
    this.#log.info("worker_added", { slot: w.slot, workerPid: w.pid, workers: live.length + 1, why: "all busy" });
  }

  /** Stops restarting and adding; asks every process to drain; resolves once all have exited. */
  async drain(timeoutMs: number, handedOver = false): Promise<void> {
    this.#stopping = true;
    this.#endRoll();
    if (this.#idleTimer) clearInterval(this.#idleTimer);
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    const exits = this.#workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null).map((w) => this.#retire(w, handedOver));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((r) => (timer = setTimeout(r, timeoutMs + 2000)));
    await Promise.race([Promise.all(exits), deadline]);
    clearTimeout(timer);
    for (const w of this.#workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGKILL");
  }

  #live(): Worker[] {
    return this.#workers.filter((w) => w.state !== "failed" && w.state !== "draining");
  }

  /** How many live service processes the rolling start allows now (no limit once it is over). */
  #allowed(): number {
    return this.#roll ? this.#roll.surge + this.#roll.exited : Infinity;
  }

  /** A rolling start's tick: count the old processes that exited, and start one of ours for each, up to `range.min`. */
  #rollOn(): void {
    const roll = this.#roll;
    if (!roll || this.#stopping) return;
    for (const pid of roll.pids) {
      if (pidAlive(pid, roll.parent)) continue; // still the old manager's: a reused pid is not
      roll.pids.delete(pid);
      roll.exited++;
    }
    const over = roll.pids.size === 0 || Date.now() >= roll.deadlineMs;
    if (over) {
      if (roll.pids.size > 0) this.#log.warn("group_rolling_timeout", { stillRunning: [...roll.pids] });
      this.#endRoll();
    }
    // A slot left failed (a crash loop) stays stopped: it counts, or each tick would start another.
    const live = this.#workers.filter((w) => w.state !== "draining").length;
    const want = Math.min(this.#range.min, this.#allowed()) - live;
    for (let i = 0; i < want; i++) {
      const w = this.#add();
      this.#log.info("worker_added", { slot: w.slot, workerPid: w.pid, workers: live + i + 1, why: "rolling upgrade" });
    }
    if (over) {
      this.#log.info("group_rolled", { workers: this.#live().length });
      this.#events.rolled?.(); // after the last ones were started
    }
  }

  #endRoll(): void {
    if (this.#roll?.timer) clearInterval(this.#roll.timer);
    this.#roll = null;
  }

  /** Whether a rolling start still waits for the old group. */
  get rolling(): boolean {
    return this.#roll !== null;
  }

  #add(slot = this.#freeSlot()): Worker {
    const w = new Worker(slot, this.#spawn(slot));
    const existing = this.#workers.findIndex((x) => x.slot === slot);
    if (existing >= 0) this.#workers[existing] = w;
    else this.#workers.push(w);
    this.#watch(w);
    return w;
  }

  #freeSlot(): number {
    let slot = 0;
    while (this.#workers.some((w) => w.slot === slot && w.state !== "draining")) slot++;
    return slot;
  }

  #watch(w: Worker): void {
    const child = w.child;
    child.on("message", (m: unknown, handle: unknown) => {
      if (typeof m !== "object" || m === null || w.child !== child) return;
      const msg = m as WorkerToManager;
      if (msg.t === "ready" && w.state === "starting") {
        w.state = "ready";
        w.idleSince = Date.now();
        this.#events.ready(w);
      } else {
        this.#events.message(w, msg, handle);
      }
    });
    child.on("error", (err) => this.#log.error("worker_error", { slot: w.slot, error: err }));
    child.once("exit", (code, signal) => this.#onExit(w, child, code, signal));
  }

  #whenReady(w: Worker): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        w.child.kill("SIGKILL");
        reject(new Error(`Cannot start service process ${w.slot}: not ready within ${WORKER_START_TIMEOUT_MS} ms`));
      }, WORKER_START_TIMEOUT_MS);
      const onMessage = (m: unknown): void => {
        if ((m as { t?: string })?.t !== "ready") return;
        done();
        resolve();
      };
      const onExit = (code: number | null, signal: string | null): void => {
        done();
        reject(new Error(`Cannot start service process ${w.slot}: it ${signal ? `was killed by ${signal}` : `exited with code ${code}`} before it was ready (see its log lines)`));
      };
      const done = (): void => {
        clearTimeout(timer);
        w.child.off("message", onMessage);
        w.child.off("exit", onExit);
      };
      w.child.on("message", onMessage);
      w.child.once("exit", onExit);
    });
  }

  #onExit(w: Worker, child: ChildProcess, code: number | null, signal: string | null): void {
    if (w.child !== child) return;
    const wasDraining = w.state === "draining";
    w.conns = 0;
    this.retire(w.stats);
    w.stats = { sessions: 0, inflight: 0, requests: 0, connections: 0 };
    this.#events.exit(w);
    if (wasDraining || this.#stopping) {
      if (!this.#stopping) this.#workers = this.#workers.filter((x) => x !== w);
      return;
    }
    const now = Date.now();
    w.crashes = [...w.crashes.filter((t) => now - t < CRASH_LOOP_WINDOW_MS), now];
    this.#log.warn("worker_exited", { slot: w.slot, workerPid: child.pid, code, signal, crashes: w.crashes.length });
    if (w.crashes.length >= CRASH_LOOP_COUNT) {
      w.state = "failed";
      this.#log.error("worker_crash_loop", {
        slot: w.slot,
        crashes: w.crashes.length,
        windowMs: CRASH_LOOP_WINDOW_MS,
        note: `service process ${w.slot} died ${w.crashes.length} times within ${CRASH_LOOP_WINDOW_MS / 1000} s and is not restarted; fix the app (see its log lines) and run "perilink upgrade"`,
      });
      return;
    }
    const delayMs = Math.min(BACKOFF_BASE_MS * 2 ** (w.crashes.length - 1), BACKOFF_MAX_MS);
    w.state = "starting";
    this.#log.info("worker_restarting", { slot: w.slot, delayMs, restarts: w.restarts + 1 });
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#stopping) return;
      const next = this.#add(w.slot);
      next.restarts = w.restarts + 1;
      next.crashes = w.crashes;
    }, delayMs);
    this.#timers.add(timer);
  }

  #retireIdle(): void {
    const now = Date.now();
    const live = this.#workers.filter((x) => x.state === "ready");
    const all = this.#workers.filter((x) => x.state !== "failed" && x.state !== "draining").length;
    if (all <= this.#range.min) return;
    const idle = live.filter((w) => w.conns === 0 && w.stats.sessions === 0 && now - w.idleSince >= this.#idleMs);
    const w = idle.sort((a, b) => b.slot - a.slot)[0];
    if (!w) return;
    this.#log.info("worker_retired", { slot: w.slot, workerPid: w.pid, workers: all - 1, idleMs: now - w.idleSince });
    void this.#retire(w);
  }

  /** Asks one process to drain and exit (`handedOver`: at an upgrade); resolves once it has exited. */
  #retire(w: Worker, handedOver = false): Promise<void> {
    const child = w.child;
    if (w.state !== "failed") w.state = "draining";
    const exited = new Promise<void>((r) => {
      if (child.exitCode !== null || child.signalCode !== null) r();
      else child.once("exit", () => r());
    });
    if (child.connected) child.send({ t: "drain", handedOver } satisfies ManagerToWorker, () => {});
    else child.kill("SIGTERM");
    return exited;
  }
}
