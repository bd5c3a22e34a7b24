import type { EventEmitter } from "node:events";
import { ServerBusyError, SessionClosedError, TimeoutError, UnreachableError, RequestRefusedError, LineDeadError } from "../errors.ts";

/** Where a link stands (docs/client.md, "What a link tells its application"). */
export type LinkState = "connecting" | "ready" | "moving" | "offline" | "closed";
/** Why a link rides a new session: its old one failed, a better line, the server's upgrade (GOAWAY ShuttingDown), another GOAWAY (idle, evicted, ids used up). */
export type MoveReason = "failover" | "line" | "upgrade" | "goaway";

/** One end of a move: where the link's session was, or is now. */
export interface LinkPlace {
  address: string;
  port: number;
  sessionNumber: number;
}

/** The `moved` event's argument. */
export interface LinkMove {
  from: LinkPlace;
  to: LinkPlace;
  reason: MoveReason;
}

/** Failures that a later try may not meet: the server may come back. */
export function worthRetrying(err: unknown): boolean {
  return (
    err instanceof UnreachableError ||
    err instanceof ServerBusyError ||
    err instanceof SessionClosedError ||
    err instanceof RequestRefusedError ||
    err instanceof LineDeadError ||
    (err instanceof TimeoutError && err.code === "PERILINK_HANDSHAKE_TIMEOUT")
  );
}

/**
 * A link's state and its `statechange` / `moved` events. When its server
 * cannot be reached, `retry` asks the server's entry to try again later —
 * one schedule per server, with backoff, however many links wait
 * (server_entry.ts `retryLater`) — and the entry moves the links when a
 * session is back.
 */
export class LinkLifecycle {
  #emitter: EventEmitter;
  #retry: () => void;
  #state: LinkState = "connecting";
  #reason: MoveReason | null = null;
  #from: LinkPlace | null = null;
  /** The last reason the server could not be reached (what a waitForReady timeout names). */
  #lastError: unknown = null;
  /** Requests waiting for ready (waitForReady): settled by the next ready or close. */
  #waiters = new Set<(err: Error | null) => void>();

  #moved: (reason: MoveReason) => void;

  constructor(emitter: EventEmitter, retry: () => void, moved: (reason: MoveReason) => void) {
    this.#emitter = emitter;
    this.#retry = retry;
    this.#moved = moved;
  }

  get state(): LinkState {
    return this.#state;
  }

  /** The session went away (`eager`: move now; else at the next use). */
  lost(reason: MoveReason, from: LinkPlace | null, eager: boolean): void {
    if (this.#state === "closed") return;
    this.#reason ??= reason;
    this.#from ??= from;
    if (eager) this.#set("moving");
  }

  /** The link's channel is open on a session (`place`): ready, and `moved` when it came from another. */
  bound(place: LinkPlace): void {
    if (this.#state === "closed") return;
    const from = this.#from;
    const reason = this.#reason ?? "goaway";
    this.#from = null;
    this.#reason = null;
    this.#set("ready");
    if (from !== null && (from.sessionNumber !== place.sessionNumber || from.address !== place.address)) {
      this.#moved(reason);
      this.#emitter.emit("moved", { from, to: place, reason } satisfies LinkMove);
    }
  }

  /** Opening the channel failed: offline, and tried again later when the failure may pass. */
  failed(err: unknown): void {
    if (this.#state === "closed" || this.#state === "connecting") return;
    this.#lastError = err;
    this.#set("offline");
    if (worthRetrying(err)) this.#retry();
  }

  /**
   * Resolves once ready; rejects with PERILINK_REQUEST_TIMEOUT at `deadline`
   * (performance.now() ms; its cause the last reason the server could not be
   * reached), or when the link closes. A wait with no deadline keeps the
   * process alive, as a request in flight does, until the link or client closes.
   */
  whenReady(deadline: number, cause: unknown): Promise<void> {
    if (this.#state === "ready") return Promise.resolve();
    if (this.#state === "closed") return Promise.reject(new SessionClosedError("Cannot use link: it is closed"));
    this.#retry();
    return new Promise<void>((resolve, reject) => {
      const timer = Number.isFinite(deadline)
        ? setTimeout(() => {
            done(new TimeoutError("PERILINK_REQUEST_TIMEOUT", "Cannot finish request: the server did not come back before the request's deadline (waitForReady)", { cause: this.#lastError ?? cause }));
          }, Math.max(0, deadline - performance.now()))
        : setInterval(() => {}, 3_600_000);
      const done = (err: Error | null): void => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        if (err) reject(err);
        else resolve();
      };
      this.#waiters.add(done);
    });
  }

  close(): void {
    this.#set("closed");
  }

  #set(s: LinkState): void {
    if (s === this.#state) return;
    const previous = this.#state;
    this.#state = s;
    this.#emitter.emit("statechange", s, previous);
    if ((s === "ready" || s === "closed") && this.#waiters.size > 0) {
      const err = s === "closed" ? new SessionClosedError("Cannot use link: it is closed") : null;
      for (const done of [...this.#waiters]) done(err);
    }
  }

}
