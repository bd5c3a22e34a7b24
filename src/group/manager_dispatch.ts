import type net from "node:net";
import type { Logger } from "../logger.ts";
import { closeRaw, isRawConnection, rawPeerAddress, socketOf, type RawConnection } from "../runtime/raw_connections.ts";
import { refuseConnection } from "../server/admission.ts";
import { peerKey } from "../server/peer_key.ts";
import type { Worker, WorkerPool } from "./worker_pool.ts";

/** Connections waiting for a free slot beyond this are refused: the group is overloaded. */
export const MAX_QUEUED_CONNECTIONS = 4096;

/** What the manager enforces over the whole group, as one server would. */
export interface GroupLimits {
  /** Connections one peer (peer_key.ts) may hold in all service processes together. */
  maxSessionsPerPeer: number;
  /** How long a connection may wait for a free slot before it is refused as busy. */
  queueWaitMs: number;
}

interface Waiting {
  /** A socket, or the bare handle of a connection no Socket was built for (raw_connections.ts). */
  socket: net.Socket | RawConnection;
  peer: string;
  since: number;
  /** Taken back from a process that exited before its send called back. */
  taken?: boolean;
}

/** Whether a waiting connection's client left meanwhile (a bare handle is not watched: it is found out where it goes). */
function gone(c: net.Socket | RawConnection): boolean {
  return !isRawConnection(c) && c.destroyed;
}

/** Lets go of a connection that will not be served. */
function drop(c: net.Socket | RawConnection): void {
  if (isRawConnection(c)) closeRaw(c);
  else c.destroy();
}

/**
 * Manager dispatch (S5, seed embodiment 3): the manager accepts, and passes
 * each connection, unread, to the ready service process with the most free
 * slots (a counting semaphore of idle slots; ties go round). With no free
 * slot the connection waits in order and the pool is asked to grow.
 *
 * The manager counts each peer's connections over the whole group (a
 * service process alone sees only its share), so `maxSessionsPerPeer`
 * holds as it does for one process; a connection past it, past the queue's
 * size, or still waiting after `queueWaitMs` is told `ServerBusy` (the
 * refusal a single server sends) instead of being left to hang. Service
 * processes report each passed connection's peer when it closes; a process
 * that exits gives back all of its.
 */
export class ManagerDispatch {
  #pool: WorkerPool;
  #slots: number;
  #log: Logger;
  #limits: GroupLimits;
  #queue: Waiting[] = [];
  #perPeer = new Map<string, number>();
  #byWorker = new Map<Worker, Map<string, number>>();
  /** Connections on their way to each process whose send has not called back (Node holds a handle until the one before was acknowledged). */
  #sending = new Map<Worker, Set<Waiting>>();
  #timer: ReturnType<typeof setInterval> | null = null;
  /** Connections the manager accepted and passed on, and the ones it refused (per peer, queue full or waited too long). */
  passed = 0;
  refused = 0;

  constructor(pool: WorkerPool, slots: number, log: Logger, limits: GroupLimits) {
    this.#pool = pool;
    this.#slots = slots;
    this.#log = log;
    this.#limits = limits;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Connections `peer` (an address) holds in the group: passed and not closed, or waiting. */
  heldBy(address: string): number {
    return this.#perPeer.get(peerKey(address)) ?? 0;
  }

  /** A connection the manager accepted: a socket, or (raw_connections.ts) its bare handle. */
  accept(socket: net.Socket | RawConnection): void {
    const raw = isRawConnection(socket);
    const peer = peerKey((raw ? rawPeerAddress(socket) : socket.remoteAddress) ?? "");
    const held = this.#perPeer.get(peer) ?? 0;
    const why = held >= this.#limits.maxSessionsPerPeer ? "maxSessionsPerPeer" : this.#queue.length >= MAX_QUEUED_CONNECTIONS ? "queue full" : null;
    if (why !== null) {
      this.#refuse(socket, why);
      return;
    }
    if (!raw) socket.on("error", () => {});
    this.#perPeer.set(peer, held + 1);
    this.#queue.push({ socket, peer, since: performance.now() });
    this.pump();
    if (this.#queue.length > 0) this.#watchQueue();
  }

  /** Passes queued connections to free slots; called whenever a slot frees or a worker becomes ready. */
  pump(): void {
    while (this.#queue.length > 0) {
      const w = this.pick();
      if (!w) {
        this.#pool.grow();
        return;
      }
      const job = this.#queue.shift()!;
      if (gone(job.socket)) {
        this.#release(job.peer);
        continue;
      }
      w.conns++;
      this.passed++;
      const mine = this.#byWorker.get(w) ?? new Map<string, number>();
      this.#byWorker.set(w, mine);
      mine.set(job.peer, (mine.get(job.peer) ?? 0) + 1);
      let sending = this.#sending.get(w);
      if (!sending) this.#sending.set(w, (sending = new Set()));
      sending.add(job);
      // The key goes with it: the service process may not learn the address (a client that reset meanwhile).
      w.child.send({ t: "conn", peer: job.peer }, job.socket as net.Socket, { keepOpen: false }, (err) => {
        if (job.taken) return; // its process exited first: exited() took it back
        sending.delete(job);
        // A bare handle is ours to close once it is on its way (Node closes a Socket's itself). One the
        // process could not take (NODE_HANDLE_NACK, e.g. at its descriptor limit) is lost with it.
        if (!err && isRawConnection(job.socket)) closeRaw(job.socket);
        if (!err) return;
        // The process went away while the socket was on its way: another one takes it.
        w.conns = Math.max(0, w.conns - 1);
        this.#take(mine, job.peer);
        if (!gone(job.socket)) {
          this.#queue.unshift(job);
          this.#watchQueue();
        } else this.#release(job.peer);
        setImmediate(() => this.pump());
      });
    }
  }

  /** A service process says these passed connections closed (their peers' keys). */
  closed(w: Worker, peers: readonly string[]): void {
    const mine = this.#byWorker.get(w);
    for (const p of peers) if (mine && this.#take(mine, p)) this.#release(p);
  }

  /**
   * A service process exited: the connections it held are gone. Those still
   * on their way to it (their send never called back: Node drops a dead
   * channel's queue) go to another process as bare handles; a Socket of
   * them may have lost its handle to the send, and is closed.
   */
  exited(w: Worker): void {
    const mine = this.#byWorker.get(w);
    this.#byWorker.delete(w);
    if (mine) for (const [p, n] of mine) for (let i = 0; i < n; i++) this.#release(p);
    const sending = this.#sending.get(w);
    this.#sending.delete(w);
    let back = 0;
    for (const job of sending ?? []) {
      job.taken = true;
      if (!isRawConnection(job.socket)) {
        job.socket.destroy();
        continue;
      }
      this.#perPeer.set(job.peer, (this.#perPeer.get(job.peer) ?? 0) + 1);
      this.#queue.splice(back++, 0, { socket: job.socket, peer: job.peer, since: job.since });
    }
    if (back > 0) this.#watchQueue();
  }

  /** The ready service process with the most free slots; null when none has one. */
  pick(): Worker | null {
    return this.#pool.freest(this.#slots);
  }

  /** Resolves once every queued connection was passed on (or its client left), or at the deadline. */
  async flush(timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.#queue.some((j) => !gone(j.socket)) && Date.now() < end) {
      this.pump();
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const j of this.#queue) {
      drop(j.socket);
      this.#release(j.peer);
    }
    this.#queue = [];
    this.#stopWatching();
  }

  /** While connections wait: the ones that waited `queueWaitMs` are refused as busy. */
  #watchQueue(): void {
    if (this.#timer) return;
    const every = Math.max(10, Math.min(this.#limits.queueWaitMs / 4, 250));
    this.#timer = setInterval(() => {
      const now = performance.now();
      while (this.#queue.length > 0 && now - this.#queue[0]!.since >= this.#limits.queueWaitMs) {
        const job = this.#queue.shift()!;
        this.#release(job.peer);
        if (!gone(job.socket)) this.#refuse(job.socket, "waited too long for a free slot");
      }
      if (this.#queue.length === 0) this.#stopWatching();
    }, every);
    this.#timer.unref?.();
  }

  #stopWatching(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  #refuse(conn: net.Socket | RawConnection, why: string): void {
    this.refused++;
    // A bare handle becomes a Socket only now, to be told ServerBusy.
    const socket = isRawConnection(conn) ? socketOf(conn, false) : conn;
    if (this.refused <= 10 || this.refused % 1000 === 0) this.#log.warn("connection_refused", { why, peer: socket.remoteAddress, refused: this.refused, queued: this.#queue.length });
    refuseConnection(socket);
  }

  /** One less connection of `peer` in `counts`; false when it had none. */
  #take(counts: Map<string, number>, peer: string): boolean {
    const n = counts.get(peer) ?? 0;
    if (n <= 0) return false;
    if (n === 1) counts.delete(peer);
    else counts.set(peer, n - 1);
    return true;
  }

  #release(peer: string): void {
    this.#take(this.#perPeer, peer);
  }
}
