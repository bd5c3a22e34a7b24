import type net from "node:net";
import type { Logger } from "../logger.ts";
import { tcpServerHandle } from "../runtime/handle_fds.ts";
import type { ListenerSet, ParkedSocket } from "../server/listener_set.ts";
import type { Worker, WorkerPool } from "./worker_pool.ts";

/** How long a parking or a revocation may take before the manager gives up waiting. */
const STEP_TIMEOUT_MS = 5000;

/**
 * Semaphore dispatch (S5, seed embodiment 4): the service processes take
 * turns. The manager keeps the listening sockets open but watches none of
 * them ("parked"); it holds the group's accept semaphore and grants it to one
 * ready service process with a free slot at a time, passing it a descriptor
 * of every listening socket. The holder accepts what is queued, closes its
 * descriptors and releases the semaphore at once (leader/follower), then
 * serves what it accepted while the next holder accepts.
 *
 * Node cannot stop watching a listening socket without closing it, nor dup()
 * one, so the semaphore travels with fresh descriptors over IPC (SCM_RIGHTS)
 * rather than as a flock: a turn costs one message per socket each way, where
 * the flock command costs a process start (see docs/benchmark-history.md, the workers benchmark).
 */
export class SemaphoreDispatch {
  #pool: WorkerPool;
  #slots: number;
  #log: Logger;
  #parked: ParkedSocket[] = [];
  #holder: Worker | null = null;
  #stopped = true;
  #released: (() => void) | null = null;
  #granting = false;
  /** Turns granted, for status and the benchmark. */
  turns = 0;

  constructor(pool: WorkerPool, slots: number, log: Logger) {
    this.#pool = pool;
    this.#slots = slots;
    this.#log = log;
  }

  /** Parks the listeners (a ready service process returns a descriptor of each) and starts granting turns. */
  async start(listeners: ListenerSet): Promise<void> {
    this.#parked = await listeners.park((server) => this.#bounce(server));
    this.#stopped = false;
    this.grant();
  }

  /** Takes the semaphore back and grants no more turns; resolves once the holder has closed its descriptors. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const holder = this.#holder;
    if (!holder) return;
    const released = new Promise<void>((r) => (this.#released = r));
    if (holder.child.connected) holder.child.send({ t: "revoke" }, () => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([released, new Promise<void>((r) => (timer = setTimeout(r, STEP_TIMEOUT_MS)))]);
    clearTimeout(timer);
    if (this.#holder === holder) {
      this.#log.error("semaphore_revoke_timeout", { slot: holder.slot, workerPid: holder.pid, note: "killed: it held the accept semaphore and did not give it back" });
      holder.child.kill("SIGKILL");
      this.#holder = null;
    }
  }

  /** Grants the semaphore to the ready service process with the most free slots, if it is free. */
  grant(): void {
    if (this.#stopped || this.#holder || this.#granting || this.#parked.length === 0) return;
    const w = this.#pick();
    if (!w) {
      this.#pool.grow();
      return;
    }
    this.#holder = w;
    this.turns++;
    this.#granting = true;
    try {
      const of = this.#parked.length;
      this.#parked.forEach((h, i) => w.child.send({ t: "lead", i, of }, h as unknown as net.Server, () => {}));
    } catch (err) {
      // A socket closed under us (its address vanished; a rescan parks the rest again): no turn.
      this.#log.warn("semaphore_grant_failed", { slot: w.slot, error: err });
      this.#holder = null;
      if (w.child.connected) w.child.send({ t: "revoke" }, () => {});
    } finally {
      this.#granting = false;
    }
  }

  released(w: Worker, accepted: number): void {
    if (this.#holder !== w) return;
    this.#holder = null;
    w.conns += accepted;
    this.#released?.();
    this.#released = null;
    setImmediate(() => this.grant());
  }

  exited(w: Worker): void {
    if (this.#holder !== w) return;
    this.#holder = null;
    this.#released?.();
    this.#released = null;
    this.grant();
  }

  #pick(): Worker | null {
    return this.#pool.freest(this.#slots);
  }

  /** A descriptor of `server`'s socket that nothing here watches: sent to a service process and back. */
  #bounce(server: net.Server): Promise<ParkedSocket> {
    const w = this.#pool.ready()[0];
    if (!w) return Promise.reject(new Error("Cannot park the listening sockets: no service process is ready"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        w.child.off("message", onMessage);
        reject(new Error(`Cannot park the listening sockets: service process ${w.slot} did not return them within ${STEP_TIMEOUT_MS} ms`));
      }, STEP_TIMEOUT_MS);
      const onMessage = (m: unknown, handle: unknown): void => {
        if ((m as { t?: string })?.t !== "bounced" || !handle) return;
        clearTimeout(timer);
        w.child.off("message", onMessage);
        resolve(handle as ParkedSocket);
      };
      w.child.on("message", onMessage);
      w.child.send({ t: "bounce" }, tcpServerHandle(server) as net.Server, () => {});
    });
  }
}
