import { ProtocolError } from "../errors.ts";
import { MAX_WINDOW, WireError } from "./constants.ts";

/** A sender waiting for credit; woken by a WINDOW, or when its stream or the session closes. */
type Waker = () => void;

/**
 * What one side of a session may still send as DATA (docs/protocol.md §4.7):
 * the session's credit, shared by every outgoing body, and each open
 * stream's own. A sender takes `available()` bytes at most, then waits; a
 * WINDOW from the peer adds credit (`grant`). Closing a stream (answered,
 * cancelled) or the whole session wakes its waiters, who then find it closed.
 */
export class SendCredit {
  #session: number;
  #initialStream: number;
  #streams = new Map<number, number>();
  #waiters = new Map<number, Waker>();
  #closed = false;

  constructor(initialSession: number, initialStream: number) {
    this.#session = initialSession;
    this.#initialStream = initialStream;
  }

  /** A stream starts sending a body: it has the initial stream window. */
  open(stream: number): void {
    if (!this.#closed) this.#streams.set(stream, this.#initialStream);
  }

  isOpen(stream: number): boolean {
    return this.#streams.has(stream);
  }

  /** Bytes `stream` may send now (0 when it must wait, or is closed). */
  available(stream: number): number {
    const own = this.#streams.get(stream);
    return own === undefined ? 0 : Math.min(own, this.#session);
  }

  take(stream: number, bytes: number): void {
    const own = this.#streams.get(stream);
    if (own === undefined) return;
    this.#streams.set(stream, own - bytes);
    this.#session -= bytes;
  }

  /** A WINDOW from the peer: `stream` 0 adds to the session, another to that stream (ignored once it closed). */
  grant(stream: number, increment: number): void {
    if (increment === 0) throw new ProtocolError(WireError.FlowControl, "Cannot accept WINDOW: an increment of 0");
    if (stream === 0) {
      this.#session = checked(this.#session + increment, "session");
      for (const wake of this.#waiters.values()) wake();
      this.#waiters.clear();
      return;
    }
    const own = this.#streams.get(stream);
    if (own === undefined) return;
    this.#streams.set(stream, checked(own + increment, `stream ${stream}`));
    this.#wake(stream);
  }

  /** Resolves at the next grant that concerns `stream`, or when it closes. */
  wait(stream: number): Promise<void> {
    if (this.#closed || !this.#streams.has(stream)) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.set(stream, resolve));
  }

  /** The stream is done sending (or its request was answered): its sender stops. */
  close(stream: number): void {
    if (this.#streams.delete(stream)) this.#wake(stream);
  }

  /** The session ended: every sender stops. */
  closeAll(): void {
    this.#closed = true;
    this.#streams.clear();
    for (const wake of this.#waiters.values()) wake();
    this.#waiters.clear();
  }

  #wake(stream: number): void {
    const wake = this.#waiters.get(stream);
    if (wake === undefined) return;
    this.#waiters.delete(stream);
    wake();
  }
}

function checked(window: number, what: string): number {
  if (window > MAX_WINDOW) throw new ProtocolError(WireError.FlowControl, `Cannot accept WINDOW: the ${what} window would pass 2^31 - 1`);
  return window;
}
