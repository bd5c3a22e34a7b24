import type { ServerRequest } from "./request_context.ts";

/**
 * The requests of one session whose handlers are still running, oldest first,
 * each with a deadline (`limits.requestTimeoutMs`). A handler that outlives it
 * is given up on: `onExpired` answers for it and its slot is free, even if the
 * handler ignores its abort signal and never settles.
 *
 * One timer per session, not per request: requests start in stream order, so
 * the oldest is first in the map; the timer fires for it, expires every
 * request that is due, and is set again for the next oldest. It is not
 * cleared when the map empties (it fires once more and finds nothing), so a
 * session answering one request at a time sets one timer per deadline, not one
 * per request.
 */
export class InflightRequests {
  #byStream = new Map<number, ServerRequest>();
  #timeoutMs: number;
  #onExpired: (req: ServerRequest) => void;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #expireBound = (): void => this.#expire();
  #stopped = false;
  /** True while `#expire` runs: it sets the timer itself when done. */
  #expiring = false;

  constructor(timeoutMs: number, onExpired: (req: ServerRequest) => void) {
    this.#timeoutMs = timeoutMs;
    this.#onExpired = onExpired;
  }

  get size(): number {
    return this.#byStream.size;
  }

  get(stream: number): ServerRequest | undefined {
    return this.#byStream.get(stream);
  }

  values(): IterableIterator<ServerRequest> {
    return this.#byStream.values();
  }

  add(req: ServerRequest): void {
    req.startedAt = performance.now(); // monotonic: a clock step must not expire or immortalise requests
    this.#byStream.set(req.stream, req);
    if (this.#timer === null && !this.#stopped && !this.#expiring) this.#arm(this.#timeoutMs);
  }

  /**
   * `req`'s body moved (a streamed request or response): its deadline starts
   * again, and it goes to the end of the map, which stays oldest first.
   */
  touch(req: ServerRequest): void {
    if (this.#byStream.get(req.stream) !== req) return;
    req.startedAt = performance.now();
    this.#byStream.delete(req.stream);
    this.#byStream.set(req.stream, req);
  }

  /** Removes `req`; false when it is no longer in flight (it expired, or the session closed). */
  take(req: ServerRequest): boolean {
    if (this.#byStream.get(req.stream) !== req) return false;
    this.#byStream.delete(req.stream);
    return true;
  }

  /** The session closed: forgets every request (their handlers' answers go nowhere) and every deadline. */
  stop(): void {
    this.#stopped = true;
    this.#byStream.clear();
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(this.#expireBound, ms);
    this.#timer.unref?.();
  }

  #expire(): void {
    this.#timer = null;
    const now = performance.now();
    this.#expiring = true;
    try {
      for (const req of this.#byStream.values()) {
        const due = req.startedAt + this.#timeoutMs;
        if (due > now) {
          this.#arm(Math.max(1, Math.ceil(due - now)));
          return;
        }
        this.#byStream.delete(req.stream);
        this.#onExpired(req); // may read on and add requests: they are after this one in the map
        if (this.#stopped) return;
      }
    } finally {
      this.#expiring = false;
    }
  }
}
