import type net from "node:net";
import type { Logger } from "../logger.ts";
import type { Worker, WorkerPool } from "./worker_pool.ts";

/** Connections waiting for a free slot beyond this are refused (closed): the group is overloaded. */
export const MAX_QUEUED_CONNECTIONS = 4096;

/**
 * Manager dispatch (S5, seed embodiment 3): the manager accepts, and passes
 * each connection, unread, to the ready service process with the most free
 * slots (a counting semaphore of idle slots; ties go round). With no free
 * slot the connection waits in order and the pool is asked to grow.
 */
export class ManagerDispatch {
  #pool: WorkerPool;
  #slots: number;
  #log: Logger;
  #queue: net.Socket[] = [];
  /** Connections the manager accepted and passed on. */
  passed = 0;

  constructor(pool: WorkerPool, slots: number, log: Logger) {
    this.#pool = pool;
    this.#slots = slots;
    this.#log = log;
  }

  get queued(): number {
    return this.#queue.length;
  }

  accept(socket: net.Socket): void {
    if (this.#queue.length >= MAX_QUEUED_CONNECTIONS) {
      this.#log.warn("connection_refused", { why: "queue full", queued: this.#queue.length });
      socket.destroy();
      return;
    }
    socket.on("error", () => {});
    this.#queue.push(socket);
    this.pump();
  }

  /** Passes queued connections to free slots; called whenever a slot frees or a worker becomes ready. */
  pump(): void {
    while (this.#queue.length > 0) {
      const w = this.pick();
      if (!w) {
        this.#pool.grow();
        return;
      }
      const socket = this.#queue.shift()!;
      if (socket.destroyed) continue;
      w.conns++;
      this.passed++;
      w.child.send({ t: "conn" }, socket, { keepOpen: false }, (err) => {
        if (!err) return;
        // The process went away while the socket was on its way: another one takes it.
        w.conns = Math.max(0, w.conns - 1);
        if (!socket.destroyed) this.#queue.unshift(socket);
        setImmediate(() => this.pump());
      });
    }
  }

  /** The ready service process with the most free slots; null when none has one. */
  pick(): Worker | null {
    return this.#pool.freest(this.#slots);
  }

  /** Resolves once every queued connection was passed on (or its client left), or at the deadline. */
  async flush(timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.#queue.some((s) => !s.destroyed) && Date.now() < end) {
      this.pump();
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const s of this.#queue) s.destroy();
    this.#queue = [];
  }
}
