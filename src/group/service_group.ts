import { spawn, type ChildProcess } from "node:child_process";
import type net from "node:net";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { acceptRawConnections } from "../runtime/raw_connections.ts";
import { detectRuntime } from "../runtime/runtime.ts";
import type { Dispatch, ServerConfig } from "../server/config.ts";
import type { ConnectionService, WorkerStatus } from "../server/connection_service.ts";
import type { Refusal } from "../server/admission.ts";
import type { Endpoint, ListenerSet } from "../server/listener_set.ts";
import { WORKER_ENV, WORKER_STATE_ENV, type WorkerToManager } from "./group_protocol.ts";
import { GroupStates } from "./group_states.ts";
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
  /** The apps' states at an upgrade: what this group inherits, and what it hands on. */
  #states: GroupStates;

  private constructor(config: ServerConfig, respawn: RespawnSpec, generation: number, log: Logger, draining: readonly number[], inherit: (() => Promise<AppStates>) | null) {
    this.#states = new GroupStates(inherit, log);
    this.dispatch = config.dispatch;
    this.#pool = new WorkerPool({
      ...(draining.length > 0 ? { rolling: { drainingPids: draining, parentPid: process.ppid, surge: config.limits.upgradeSurge, windowMs: config.drainTimeoutMs + ROLL_MARGIN_MS } satisfies RollingStart } : {}),
      range: config.workers,
      idleMs: config.workerIdleMs,
      log,
      spawn: (slot) => spawnWorker(respawn, slot, generation, this.#states.offer(slot)),
      events: {
        ready: () => this.#wake(),
        rolled: () => this.#states.close(),
        exit: (w) => {
          this.#states.exited(w);
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
    if (!this.#pool.rolling) this.#states.close(); // every process of the group started: later ones start without a state
    // Connections go on as bare handles, no Socket built here (each listener once; the 'connection' event where the runtime cannot).
    for (const tcp of listeners.tcpServers()) acceptRawConnections(tcp, (conn) => this.#manager.accept(conn));
    await this.#semaphore?.start(listeners);
  }

  accept(socket: net.Socket): void {
    this.#manager.accept(socket);
  }

  async stopAccepting(): Promise<void> {
    await this.#semaphore?.stop();
  }

  async drain(timeoutMs: number, handedOver = false): Promise<void> {
    await this.#semaphore?.stop();
    await this.#manager.flush(timeoutMs);
    await this.#pool.drain(timeoutMs, handedOver);
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
        void this.#states.answer(w);
        break;
      case "state":
        this.#states.answered(w, msg.text);
        break;
      case "stats":
        w.stats = { sessions: msg.sessions, inflight: msg.inflight, requests: msg.requests, connections: msg.connections, counters: msg.counters, latency: msg.latency, refusedBy: msg.refusedBy };
        break;
      default:
        break;
    }
  }

  /** For the next generation (docs/apps.md, "With service processes"): each slot's state. */
  appStates(): Promise<AppStates> {
    return this.#states.collect(this.#pool.workers);
  }

  /** A slot freed or a service process became ready: queued connections and the semaphore move on. */
  #wake(): void {
    this.#manager.pump();
    this.#semaphore?.grant();
  }
}

/** After the handover a rolling start waits for the old group this much longer than a drain may last (its manager kills stragglers 2 s after it). */
const ROLL_MARGIN_MS = 10_000;

/** The same program and arguments as the manager, told by the environment that it serves for a manager (and whether it may ask for an inherited state). */
export function spawnWorker(respawn: RespawnSpec, slot: number, generation: number, offerState = false): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, [WORKER_ENV]: String(slot), [GENERATION_ENV]: String(generation) };
  if (offerState) env[WORKER_STATE_ENV] = "1";
  else delete env[WORKER_STATE_ENV];
  for (const k of [HANDOFF_ENV, HANDOFF_TIMEOUT_ENV, PORTS_ENV, DRAINING_PIDS_ENV, "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"]) delete env[k];
  return spawn(respawn.execPath, [...respawn.execArgv, respawn.script, ...respawn.args], { stdio: ["ignore", "inherit", "inherit", "ipc"], env });
}
