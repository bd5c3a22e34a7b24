import { spawn, type ChildProcess } from "node:child_process";
import type net from "node:net";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { detectRuntime } from "../runtime/runtime.ts";
import type { Dispatch, ServerConfig } from "../server/config.ts";
import type { ListenerSet } from "../server/listener_set.ts";
import { WORKER_ENV, type WorkerToManager } from "./group_protocol.ts";
import { GENERATION_ENV, HANDOFF_ENV, HANDOFF_TIMEOUT_ENV, PORTS_ENV } from "./handoff_protocol.ts";
import { ManagerDispatch } from "./manager_dispatch.ts";
import { SemaphoreDispatch } from "./semaphore_dispatch.ts";
import type { RespawnSpec } from "./upgrader.ts";
import { WorkerPool, type Worker } from "./worker_pool.ts";

/** One service process in `status`. */
export interface WorkerStatus {
  slot: number;
  pid: number | null;
  state: Worker["state"];
  sessions: number;
  inflight: number;
  requests: number;
  /** Connections passed to it (manager) or accepted by it (semaphore) and still open. */
  connections: number;
  restarts: number;
}

/** What the server of a manager process asks of its group (see server.ts). */
export interface ConnectionGroup {
  readonly dispatch: Dispatch;
  /** The listeners are open (at start, after a takeover or a rollback). */
  listening(listeners: ListenerSet): Promise<void>;
  /** A connection the manager accepted. */
  accept(socket: net.Socket): void;
  /** Before this process's listeners close for a handoff: no service process accepts any more. */
  stopAccepting(): Promise<void>;
  /** Passes on what is queued, asks every service process to drain, resolves once all have exited. */
  drain(timeoutMs: number): Promise<void>;
  totals(): { sessions: number; inflight: number; requests: number };
  workers(): WorkerStatus[];
  /** Connections the manager accepted and passed on, and turns granted at the accept semaphore. */
  counters(): { passed: number; turns: number };
}

/**
 * The manager's side of a group (S5): the service processes and how they get
 * connections. Started before the manager's listeners open, so that a group
 * taking over from an older one is ready when it starts accepting.
 */
export class ServiceGroup implements ConnectionGroup {
  readonly dispatch: Dispatch;
  #pool: WorkerPool;
  #manager: ManagerDispatch;
  #semaphore: SemaphoreDispatch | null;
  #log: Logger;

  private constructor(config: ServerConfig, respawn: RespawnSpec, generation: number, log: Logger) {
    this.dispatch = config.dispatch;
    this.#log = log;
    this.#pool = new WorkerPool({
      range: config.workers,
      idleMs: config.workerIdleMs,
      log,
      spawn: (slot) => spawnWorker(respawn, slot, generation),
      events: {
        ready: () => this.#wake(),
        exit: (w) => {
          this.#semaphore?.exited(w);
          this.#wake();
        },
        message: (w, msg) => this.#onMessage(w, msg),
      },
    });
    this.#manager = new ManagerDispatch(this.#pool, config.workerSlots, log);
    this.#semaphore = config.dispatch === "semaphore" ? new SemaphoreDispatch(this.#pool, config.workerSlots, log) : null;
  }

  /** Starts the group's service processes; resolves once `workers.min` of them are ready. */
  static async start(config: ServerConfig, respawn: RespawnSpec, generation: number, log: Logger): Promise<ServiceGroup> {
    if (!detectRuntime().canInheritSockets) {
      throw new ConfigError(
        `Cannot start ${config.workers.max} service processes: ${detectRuntime().name} cannot pass a connection or a listening socket to another process; use "workers": 1 (the default) or run on Node.js`,
      );
    }
    const group = new ServiceGroup(config, respawn, generation, log);
    await group.#pool.start();
    log.info("group_started", { dispatch: config.dispatch, workers: group.#pool.ready().map((w) => w.pid), min: config.workers.min, max: config.workers.max });
    return group;
  }

  async listening(listeners: ListenerSet): Promise<void> {
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

  totals(): { sessions: number; inflight: number; requests: number } {
    let sessions = 0;
    let inflight = 0;
    let requests = 0;
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

  counters(): { passed: number; turns: number } {
    return { passed: this.#manager.passed, turns: this.#semaphore?.turns ?? 0 };
  }

  #onMessage(w: Worker, msg: WorkerToManager): void {
    switch (msg.t) {
      case "closed":
        w.conns = Math.max(0, w.conns - msg.n);
        if (w.conns === 0) w.idleSince = Date.now();
        this.#wake();
        break;
      case "released":
        this.#semaphore?.released(w, msg.accepted);
        break;
      case "stats":
        w.stats = { sessions: msg.sessions, inflight: msg.inflight, requests: msg.requests, connections: msg.connections };
        break;
      default:
        break;
    }
  }

  /** A slot freed or a service process became ready: queued connections and the semaphore move on. */
  #wake(): void {
    this.#manager.pump();
    this.#semaphore?.grant();
  }
}

/** The same program and arguments as the manager, told by the environment that it serves for a manager. */
export function spawnWorker(respawn: RespawnSpec, slot: number, generation: number): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, [WORKER_ENV]: String(slot), [GENERATION_ENV]: String(generation) };
  for (const k of [HANDOFF_ENV, HANDOFF_TIMEOUT_ENV, PORTS_ENV, "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"]) delete env[k];
  return spawn(respawn.execPath, [...respawn.execArgv, respawn.script, ...respawn.args], { stdio: ["ignore", "inherit", "inherit", "ipc"], env });
}
