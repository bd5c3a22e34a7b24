import { spawn, type ChildProcess } from "node:child_process";
import type net from "node:net";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { detectRuntime } from "../runtime/runtime.ts";
import type { Dispatch, ServerConfig } from "../server/config.ts";
import type { ConnectionService, WorkerStatus } from "../server/connection_service.ts";
import type { Refusal } from "../server/admission.ts";
import type { Endpoint, ListenerSet } from "../server/listener_set.ts";
import { WORKER_ENV, type ManagerToWorker, type WorkerToManager } from "./group_protocol.ts";
import { DRAINING_PIDS_ENV, GENERATION_ENV, HANDOFF_ENV, HANDOFF_TIMEOUT_ENV, PORTS_ENV, type AppStates } from "../handoff/handoff_protocol.ts";
import { ManagerDispatch } from "./manager_dispatch.ts";
import { SemaphoreDispatch } from "./semaphore_dispatch.ts";
import type { RespawnSpec } from "../handoff/upgrader.ts";
import { SUMMED, WorkerPool, type RollingStart, type Worker } from "./worker_pool.ts";
import { LatencyHistogram } from "../open_metrics.ts";

/**
 * The manager's side of a group (S5): the service processes and how they get
 * connections. Started before the manager's listeners open, so that a group
 * taking over from an older one is ready when it starts accepting.
 */
export class ServiceGroup implements ConnectionService {
  readonly dispatch: Dispatch;
  /** Accepted sockets go to a service process unread. */
  readonly pauseOnConnect = true;
  #pool: WorkerPool;
  #manager: ManagerDispatch;
  #semaphore: SemaphoreDispatch | null;
  /** Asks the old generation for its apps' states (an upgrade); asked once, when the first service process wants its slot's. */
  #inherit: (() => Promise<AppStates>) | null;
  #inherited: Promise<AppStates> | null = null;
  /** Slots whose inherited state went to a process already: a restarted one starts without. */
  #stateGiven = new Set<number>();
  /** Service processes asked for the state their app put, and what to do with the answer. */
  #stateAsked = new Map<Worker, (text: string | null) => void>();

  private constructor(config: ServerConfig, respawn: RespawnSpec, generation: number, log: Logger, draining: readonly number[], inherit: (() => Promise<AppStates>) | null) {
    this.#inherit = inherit;
    this.dispatch = config.dispatch;
    this.#pool = new WorkerPool({
      ...(draining.length > 0 ? { rolling: { drainingPids: draining, parentPid: process.ppid, surge: config.limits.upgradeSurge, windowMs: config.drainTimeoutMs + ROLL_MARGIN_MS } satisfies RollingStart } : {}),
      range: config.workers,
      idleMs: config.workerIdleMs,
      log,
      spawn: (slot) => spawnWorker(respawn, slot, generation),
      events: {
        ready: () => this.#wake(),
        exit: (w) => {
          this.#stateAsked.get(w)?.(null);
          this.#manager.exited(w);
          this.#semaphore?.exited(w);
          this.#wake();
        },
        message: (w, msg) => this.#onMessage(w, msg),
      },
    });
    this.#manager = new ManagerDispatch(this.#pool, config.workerSlots, log, {
      maxSessionsPerPeer: config.limits.maxSessionsPerPeer,
      queueWaitMs: config.limits.handshakeTimeoutMs,
    });
    this.#semaphore = config.dispatch === "semaphore" ? new SemaphoreDispatch(this.#pool, config.workerSlots, log) : null;
  }

  /**
   * Starts the group's service processes; resolves once `workers.min` of them
   * are ready, or in an upgrade (`drainingPids`: the old group's), once those
   * that `limits.upgradeSurge` lets run beside the old group are.
   */
  static async start(
    config: ServerConfig,
    respawn: RespawnSpec,
    generation: number,
    log: Logger,
    drainingPids: readonly number[] = [],
    inherit: (() => Promise<AppStates>) | null = null,
  ): Promise<ServiceGroup> {
    if (!detectRuntime().canInheritSockets) {
      throw new ConfigError(
        `Cannot start ${config.workers.max} service processes: ${detectRuntime().name} cannot pass a connection or a listening socket to another process; use "workers": 1 (the default) or run on Node.js`,
      );
    }
    const group = new ServiceGroup(config, respawn, generation, log, drainingPids, inherit);
    await group.#pool.start();
    log.info("group_started", { dispatch: config.dispatch, workers: group.#pool.ready().map((w) => w.pid), min: config.workers.min, max: config.workers.max });
    return group;
  }

  async listening(listeners: ListenerSet): Promise<void> {
    this.#pool.handedOver();
    await this.#semaphore?.start(listeners);
  }

  accept(socket: net.Socket): void {
    this.#manager.accept(socket);
  }

  async stopAccepting(): Promise<void> {
    await this.#semaphore?.stop();
  }

  async drain(timeoutMs: number): Promise<void> {
    await this.#semaphore?.stop();
    await this.#manager.flush(timeoutMs);
    await this.#pool.drain(timeoutMs);
  }

  get connections(): number {
    return this.totals().sessions;
  }

  get inflight(): number {
    return this.totals().inflight;
  }

  /** Frames and output are held by the service processes. */
  bufferedBytes(): number {
    return 0;
  }

  /** The service processes' sessions are theirs: each sees its own addresses go. */
  addressRemoved(_ep: Endpoint): void {}

  /** A manager's counters: its own (probes…), the requests its service processes served, and how connections reached them. */
  counters(own: Record<string, number>): Record<string, number> {
    const out: Record<string, number> = { ...own };
    for (const k of SUMMED) {
      // Levels (channels, raw connections open) of exited processes are gone; events are kept.
      let n = k === "channelsOpen" || k === "rawConnections" ? 0 : (this.#pool.retired.counters[k] ?? 0);
      for (const w of this.#pool.workers) n += k === "requests" ? w.stats.requests : (w.stats.counters?.[k] ?? 0);
      out[k] = (own[k] ?? 0) + n;
    }
    return { ...out, connectionsPassed: this.#manager.passed, connectionsRefused: this.#manager.refused, semaphoreTurns: this.#semaphore?.turns ?? 0 };
  }

  /** The manager's refusals with the service processes' (admission runs there), those that exited included. */
  refusedBy(own: Partial<Record<Refusal, number>>): Partial<Record<Refusal, number>> {
    const out: Record<string, number> = { ...own };
    const add = (from: Record<string, number> | undefined): void => {
      for (const [k, v] of Object.entries(from ?? {})) if (typeof v === "number" && v >= 0) out[k] = (out[k] ?? 0) + v;
    };
    add(this.#pool.retired.refusedBy);
    for (const w of this.#pool.workers) add(w.stats.refusedBy);
    return out as Partial<Record<Refusal, number>>;
  }

  /** The manager's own buckets (none: it runs no requests) with the service processes'. */
  latency(own: LatencyHistogram): LatencyHistogram {
    const h = new LatencyHistogram();
    h.add(own.snapshot());
    h.add(this.#pool.retired.latency.snapshot());
    for (const w of this.#pool.workers) h.add(w.stats.latency);
    return h;
  }

  totals(): { sessions: number; inflight: number; requests: number } {
    let sessions = 0;
    let inflight = 0;
    let requests = this.#pool.retired.counters.requests ?? 0;
    for (const w of this.#pool.workers) {
      sessions += w.stats.sessions;
      inflight += w.stats.inflight;
      requests += w.stats.requests;
    }
    return { sessions, inflight, requests };
  }

  workers(): WorkerStatus[] {
    return this.#pool.workers.map((w) => ({
      slot: w.slot,
      pid: w.state === "failed" ? null : w.pid,
      state: w.state,
      sessions: w.stats.sessions,
      inflight: w.stats.inflight,
      requests: w.stats.requests,
      connections: w.conns,
      restarts: w.restarts,
    }));
  }

  #onMessage(w: Worker, msg: WorkerToManager): void {
    switch (msg.t) {
      case "closed":
        this.#manager.closed(w, msg.peers ?? []);
        w.conns = Math.max(0, w.conns - msg.n);
        if (w.conns === 0) w.idleSince = Date.now();
        this.#wake();
        break;
      case "released":
        this.#semaphore?.released(w, msg.accepted);
        break;
      case "state-request":
        void this.#inheritedFor(w.slot).then((text) => {
          if (w.child.connected) w.child.send({ t: "state", text } satisfies ManagerToWorker, () => {});
        });
        break;
      case "state":
        this.#stateAsked.get(w)?.(typeof msg.text === "string" ? msg.text : null);
        break;
      case "stats":
        w.stats = { sessions: msg.sessions, inflight: msg.inflight, requests: msg.requests, connections: msg.connections, counters: msg.counters, latency: msg.latency, refusedBy: msg.refusedBy };
        break;
      default:
        break;
    }
  }

  /**
   * What a new process in `slot` starts from: the old generation's state for
   * that slot (an old single process's for every slot), once per slot.
   */
  async #inheritedFor(slot: number): Promise<string | null> {
    if (!this.#inherit || this.#stateGiven.has(slot)) return null;
    this.#stateGiven.add(slot);
    this.#inherited ??= this.#inherit().catch(() => ({ state: null }));
    const got = await this.#inherited;
    return got.states ? (got.states[slot] ?? null) : got.state;
  }

  /**
   * For the next generation (docs/apps.md, "Upgrades"): the state each
   * ready service process's app put, by slot, asked of them all at once and
   * waited for at most STATE_ASK_MS (one that does not answer has none).
   */
  async appStates(): Promise<AppStates> {
    // A process still starting (restarted after a crash) or draining (retired idle) does not answer: it has none to pass.
    const bySlot = new Map<number, Worker>();
    for (const w of this.#pool.workers) if (w.state === "ready" && w.child.connected) bySlot.set(w.slot, w);
    const states: (string | null)[] = Array.from({ length: Math.max(0, ...[...bySlot.keys()].map((s) => s + 1)) }, () => null);
    await Promise.all(
      [...bySlot].map(
        ([slot, w]) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => answered(null), STATE_ASK_MS);
            let done = false;
            const answered = (text: string | null): void => {
              if (done) return;
              done = true;
              clearTimeout(timer);
              if (this.#stateAsked.get(w) === answered) this.#stateAsked.delete(w);
              states[slot] = text;
              resolve();
            };
            this.#stateAsked.set(w, answered);
            w.child.send({ t: "state-request" } satisfies ManagerToWorker, (err: Error | null) => err && answered(null));
          }),
      ),
    );
    return { state: states[0] ?? null, states };
  }

  /** A slot freed or a service process became ready: queued connections and the semaphore move on. */
  #wake(): void {
    this.#manager.pump();
    this.#semaphore?.grant();
  }
}

/** How long an old group's service process has to answer for its app's state. */
const STATE_ASK_MS = 5000;

/** After the handover a rolling start waits for the old group this much longer than a drain may last (its manager kills stragglers 2 s after it). */
const ROLL_MARGIN_MS = 10_000;

/** The same program and arguments as the manager, told by the environment that it serves for a manager. */
export function spawnWorker(respawn: RespawnSpec, slot: number, generation: number): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, [WORKER_ENV]: String(slot), [GENERATION_ENV]: String(generation) };
  for (const k of [HANDOFF_ENV, HANDOFF_TIMEOUT_ENV, PORTS_ENV, DRAINING_PIDS_ENV, "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"]) delete env[k];
  return spawn(respawn.execPath, [...respawn.execArgv, respawn.script, ...respawn.args], { stdio: ["ignore", "inherit", "inherit", "ipc"], env });
}
