import type { EventEmitter } from "node:events";
import { ServerBusyError, SessionClosedError, TimeoutError, UnreachableError, RequestRefusedError, LineDeadError } from "../errors.ts";
import { TARGET } from "../target.ts";

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

/** The first wait before trying an unreachable server again; doubled each try up to the target's reconnectMaxMs. */
const RECONNECT_FIRST_MS = 100;

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
 * A link's state and its `statechange` / `moved` events, and the tries to
 * reach a server whose every address is down: exponential backoff from
 * 100 ms up to the target's `reconnectMaxMs`, each wait drawn between half
 * and all of its bound (jitter, so many hosts do not come back in step).
 * `rebind` is the link's own "open my channel on the current session";
 * timers never keep the process alive.
 */
export class LinkLifecycle {
  #emitter: EventEmitter;
  #rebind: () => Promise<unknown>;
  #state: LinkState = "connecting";
  #reason: MoveReason | null = null;
  #from: LinkPlace | null = null;
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #maxMs: number;

  constructor(emitter: EventEmitter, rebind: () => Promise<unknown>, maxMs = TARGET.client.reconnectMaxMs) {
    this.#emitter = emitter;
    this.#rebind = rebind;
    this.#maxMs = maxMs;
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
    this.#attempt = 0;
    this.#clearTimer();
    const from = this.#from;
    const reason = this.#reason ?? "goaway";
    this.#from = null;
    this.#reason = null;
    this.#set("ready");
    if (from !== null && (from.sessionNumber !== place.sessionNumber || from.address !== place.address)) this.#emitter.emit("moved", { from, to: place, reason } satisfies LinkMove);
  }

  /** Opening the channel failed: offline, and tried again later when the failure may pass. */
  failed(err: unknown): void {
    if (this.#state === "closed" || this.#state === "connecting") return;
    this.#set("offline");
    if (worthRetrying(err)) this.retrySoon();
  }

  /** Schedules the next try (no-op when one is scheduled). */
  retrySoon(now = false): void {
    if (this.#state === "closed" || this.#timer !== null) return;
    const bound = Math.min(this.#maxMs, RECONNECT_FIRST_MS * 2 ** Math.min(this.#attempt, 20));
    const wait = now ? 0 : bound / 2 + Math.random() * (bound / 2);
    this.#attempt++;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#rebind().catch((err: unknown) => this.failed(err));
    }, wait);
    this.#timer.unref?.();
  }

  /** Resolves once ready; rejects with PERILINK_REQUEST_TIMEOUT at `deadline` (performance.now() ms), or when the link closes. */
  whenReady(deadline: number, cause: unknown): Promise<void> {
    if (this.#state === "ready") return Promise.resolve();
    if (this.#state === "closed") return Promise.reject(new SessionClosedError("Cannot use link: it is closed"));
    this.retrySoon(this.#state !== "offline");
    return new Promise<void>((resolve, reject) => {
      const onState = (s: LinkState): void => {
        if (s === "ready") done(null);
        else if (s === "closed") done(new SessionClosedError("Cannot use link: it is closed"));
      };
      // Not unref'd: a request that waits keeps the process alive (and so the tries go on), as one in flight does.
      const timer = Number.isFinite(deadline)
        ? setTimeout(
            () => done(new TimeoutError("PERILINK_REQUEST_TIMEOUT", "Cannot finish request: the server did not come back before the request's deadline (waitForReady)", { cause })),
            Math.max(0, deadline - performance.now()),
          )
        : setInterval(() => {}, 3_600_000);
      const done = (err: Error | null): void => {
        clearTimeout(timer);
        this.#emitter.off("statechange", onState);
        if (err) reject(err);
        else resolve();
      };
      this.#emitter.on("statechange", onState);
    });
  }

  close(): void {
    this.#clearTimer();
    this.#set("closed");
  }

  #set(s: LinkState): void {
    if (s === this.#state) return;
    const previous = this.#state;
    this.#state = s;
    this.#emitter.emit("statechange", s, previous);
  }

  #clearTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
