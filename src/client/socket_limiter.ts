import { SocketLimitError } from "../errors.ts";

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Counts the client's TCP sockets (C9): at most `max` at once; beyond that a
 * caller waits in a FIFO queue of at most `maxWaiting` for `waitTimeoutMs`,
 * then fails with `PERILINK_SOCKET_LIMIT`. A released slot goes to the
 * oldest waiter.
 */
export class SocketLimiter {
  readonly max: number;
  #maxWaiting: number;
  #waitTimeoutMs: number;
  #used = 0;
  #queue: Waiter[] = [];
  #closedWith: Error | null = null;
  /** Called when a slot is wanted and none is free: lets the owner close an idle session. */
  onPressure: (() => void) | null = null;

  #words: { what: string; hint: string; hintWait: string };

  /** `words` name what a slot opens and what to do, for the errors (the session table's by default). */
  constructor(max: number, maxWaiting: number, waitTimeoutMs: number, words: { what: string; hint: string } = { what: "session", hint: "raise maxSessions or maxWaiting, or close links" }) {
    this.#words = { ...words, hintWait: words.hint.replace(" or maxWaiting", "") };
    if (!Number.isInteger(max) || max < 1) throw new RangeError("maxSessions must be an integer ≥ 1");
    if (!Number.isInteger(maxWaiting) || maxWaiting < 0) throw new RangeError("maxWaiting must be an integer ≥ 0");
    if (!Number.isFinite(waitTimeoutMs) || waitTimeoutMs < 0) throw new RangeError("waitTimeoutMs must be a number of ms ≥ 0");
    this.max = max;
    this.#maxWaiting = maxWaiting;
    this.#waitTimeoutMs = waitTimeoutMs;
  }

  get used(): number {
    return this.#used;
  }
  get waiting(): number {
    return this.#queue.length;
  }

  tryAcquire(): boolean {
    if (this.#used >= this.max) return false;
    this.#used++;
    return true;
  }

  acquire(): Promise<void> {
    if (this.#closedWith) return Promise.reject(this.#closedWith);
    if (this.tryAcquire()) return Promise.resolve();
    if (this.#queue.length >= this.#maxWaiting) {
      return Promise.reject(
        new SocketLimitError(`Cannot open a ${this.#words.what}: all ${this.max} sockets are in use and ${this.#queue.length} requests already wait; ${this.#words.hint}`),
      );
    }
    const p = new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.#queue.indexOf(w);
          if (i >= 0) this.#queue.splice(i, 1);
          reject(new SocketLimitError(`Cannot open a ${this.#words.what}: no socket freed within ${this.#waitTimeoutMs} ms (limit ${this.max}); ${this.#words.hintWait}`));
        }, this.#waitTimeoutMs),
      };
      this.#queue.push(w);
    });
    this.onPressure?.();
    return p;
  }

  release(): void {
    const next = this.#queue.shift();
    if (next) {
      clearTimeout(next.timer); // the slot passes straight to the waiter
      next.resolve();
      return;
    }
    if (this.#used > 0) this.#used--;
  }

  /** Fails every waiter, and every later acquire(), with `err` (the client is closing). */
  close(err: Error): void {
    this.#closedWith = err;
    this.rejectAll(err);
  }

  /** Fails every waiter. */
  rejectAll(err: Error): void {
    for (const w of this.#queue.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }
}
