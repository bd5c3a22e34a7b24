import { TimeoutError } from "../errors.ts";
import { WholeBody, type IncomingBody } from "../protocol/incoming_body.ts";
import type { OutgoingBody } from "../protocol/outgoing_body.ts";

/** What the table needs from its session: the frames it sends, the bodies it reads. */
export interface RequestWire {
  /** Sends REQUEST (a streamed body: REQUEST, then its DATA). */
  request(channel: number, stream: number, payload: Uint8Array | string | OutgoingBody): void;
  cancel(channel: number, stream: number): void;
  /** A RESPONSE said its body follows in DATA: the body to read it from. */
  openResponse(stream: number, defaultLimit: number): IncomingBody;
  /** The request is over: its bodies stop (a response still arriving fails with `err`). */
  stopStream(stream: number, err: Error | null): void;
  /** A request passed its deadline (the line may be dead: the session checks it). */
  timedOut?(): void;
}

/** What a request resolves with: the response's bytes, or its body to read as it arrives. */
export type Want = "bytes" | "body";
/** A response read as a body: streamed, or whole behind the same interface. */
export type ResponseBody = IncomingBody | WholeBody;

interface Pending {
  resolve(value: Buffer | ResponseBody): void;
  reject(err: Error): void;
  channel: number;
  /** Absolute deadline (performance.now() ms, monotonic), or Infinity. */
  deadline: number;
  timeoutMs: number;
  /** Not yet sent (waiting for a slot) while set; null once on the wire. */
  payload: Uint8Array | string | OutgoingBody | null;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  want: Want;
  /** The most a response taken as bytes may hold. */
  maxBytes: number;
  /** A streamed response, once its RESPONSE came: the request ends with its body. */
  body: IncomingBody | null;
  /** It sends a streamed body or reads one: the session's streams hear when it ends. */
  streams: boolean;
}

/** How often deadlines are checked while a request with one is pending. */
const SWEEP_MS = 100;

/**
 * The requests of one session: which streams wait for an answer, which of
 * them occupy one of the server's `maxInflight` slots, and which wait for
 * one (docs/protocol.md §4.5).
 *
 * Every way a request can end — answered, failed by the server, cancelled by
 * its caller, past its deadline, its channel closed or refused, refused by a
 * GOAWAY, or the session gone — goes through `#settle()`, the one place that
 * frees its slot, sends the next queued request, detaches its abort listener
 * and tells the session when nothing is pending any more.
 *
 * A cancelled request (its signal aborted, or its deadline passed) frees its
 * slot at once: the CANCEL is sent, and a late answer from the server for
 * that stream is ignored.
 */
export class RequestTable {
  #wire: RequestWire;
  #maxInflight: number;
  #pending = new Map<number, Pending>();
  /** Streams waiting for a slot, oldest first; settled ones are skipped when their turn comes. */
  #queue: number[] = [];
  #queueHead = 0;
  /** Pending streams that are on the wire. */
  #sent = 0;
  #sending = true;
  #pumpScheduled = false;
  #pumpBound = (): void => this.#pump();
  #sweep: ReturnType<typeof setInterval> | null = null;
  #idleWaiters: (() => void)[] = [];

  constructor(wire: RequestWire, maxInflight: number) {
    this.#wire = wire;
    this.#maxInflight = Math.max(1, maxInflight);
  }

  /** Requests waiting for an answer, sent or queued. */
  get size(): number {
    return this.#pending.size;
  }

  /** Requests on the wire (each holds one of the server's in-flight slots). */
  get inflight(): number {
    return this.#sent;
  }

  /**
   * Adds a request: sent now if a slot is free, else queued. Settles once,
   * through one of the paths listed on the class.
   */
  add(channel: number, stream: number, payload: Uint8Array | string | OutgoingBody, timeoutMs: number, signal: AbortSignal | undefined, want: Want = "bytes", maxBytes = Infinity): Promise<Buffer | ResponseBody> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    return new Promise<Buffer | ResponseBody>((resolve, reject) => {
      const p: Pending = {
        resolve,
        reject,
        channel,
        deadline: timeoutMs > 0 ? performance.now() + timeoutMs : Infinity, // monotonic: immune to clock steps
        timeoutMs,
        payload,
        signal,
        onAbort: undefined,
        want,
        maxBytes,
        body: null,
        streams: typeof payload === "object" && !(payload instanceof Uint8Array),
      };
      this.#pending.set(stream, p);
      if (signal) {
        p.onAbort = () => this.#cancel(stream, abortReason(signal));
        signal.addEventListener("abort", p.onAbort, { once: true });
      }
      if (timeoutMs > 0 && this.#sweep === null) this.#startSweep();
      // Only past an empty queue: a slot freed in this turn belongs to the older queued
      // request (its pump is scheduled by #settle), and stream ids must go out in order.
      if (this.#sending && this.#sent < this.#maxInflight && this.#queueHead === this.#queue.length) this.#send(stream, p);
      else this.#queue.push(stream);
    });
  }

  /**
   * The server's RESPONSE for `stream`. An answer for a stream no longer
   * pending (cancelled) is ignored. A streamed one hands its body to the
   * caller (or gathers it, up to `maxBytes`); the request stays in flight
   * until the body ends (`finish`) or fails.
   */
  answer(stream: number, value: Buffer, streamed = false): void {
    const p = this.#pending.get(stream);
    if (!p || p.body !== null) return;
    if (!streamed) return this.#settle(stream, p, null, value);
    const body = (p.body = this.#wire.openResponse(stream, p.maxBytes));
    p.streams = true;
    if (p.want === "body") p.resolve(body);
    else body.bytes(p.maxBytes, "the response").then(p.resolve, p.reject);
  }

  /** A streamed response's body ended: the request is over. */
  finish(stream: number): void {
    const p = this.#pending.get(stream);
    if (p && p.body !== null) this.#settle(stream, p, null);
  }

  /** Bytes of `stream`'s bodies moved: its deadline starts again. */
  touch(stream: number): void {
    const p = this.#pending.get(stream);
    if (p && p.timeoutMs > 0) p.deadline = performance.now() + p.timeoutMs;
  }

  /** The caller gave up on `stream` (its body's source failed, or it stopped reading the response). */
  abort(stream: number, err: Error): void {
    this.#cancel(stream, err);
  }

  /** The server's ERROR for `stream`. */
  fail(stream: number, err: Error): void {
    const p = this.#pending.get(stream);
    if (p) this.#settle(stream, p, err);
  }

  /** Fails every request of `channel` (closed by us, or refused by the server). */
  /** Fails the requests of a closed channel; the error is made only when one exists (an Error's stack costs microseconds per close). */
  failChannel(channel: number, err: () => Error): void {
    let e: Error | null = null;
    for (const [stream, p] of this.#pending) if (p.channel === channel) this.#settle(stream, p, (e ??= err()));
  }

  /** Fails every request above `lastStream` (a GOAWAY's mark: the server never starts them) and stops sending. */
  failAbove(lastStream: number, err: Error): void {
    this.#sending = false;
    for (const [stream, p] of this.#pending) if (stream > lastStream) this.#settle(stream, p, err);
  }

  /** The session is gone: fails everything, choosing each error by whether the request was sent. */
  failAll(errorFor: (stream: number, sent: boolean) => Error): void {
    this.#sending = false;
    if (this.#sweep) clearInterval(this.#sweep);
    this.#sweep = null;
    for (const [stream, p] of this.#pending) this.#settle(stream, p, errorFor(stream, p.payload === null));
    this.#queue = [];
    this.#queueHead = 0;
  }

  /** Resolves once no request is pending. */
  whenIdle(): Promise<void> {
    if (this.#pending.size === 0) return Promise.resolve();
    return new Promise((r) => this.#idleWaiters.push(r));
  }

  /** The one way out for every request. */
  #settle(stream: number, p: Pending, err: Error | null, value?: Buffer): void {
    this.#pending.delete(stream);
    if (p.onAbort) p.signal!.removeEventListener("abort", p.onAbort);
    if (p.payload === null) this.#sent--;
    p.payload = null;
    if (p.streams) this.#wire.stopStream(stream, err);
    if (p.body !== null) {
      // The caller has the body (or its gatherer does): the error reaches it there.
    } else if (err) p.reject(err);
    else p.resolve(p.want === "body" ? new WholeBody(value!) : value!);
    if (this.#queueHead < this.#queue.length && !this.#pumpScheduled) {
      // After the current turn: one abort signal may cancel many requests in a row, and
      // a freed slot must not carry a queued request that is about to be cancelled too.
      this.#pumpScheduled = true;
      queueMicrotask(this.#pumpBound);
    }
    if (this.#pending.size === 0) {
      if (this.#sweep) clearInterval(this.#sweep);
      this.#sweep = null;
      const waiters = this.#idleWaiters;
      if (waiters.length > 0) {
        this.#idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  /** The caller gave up (signal or deadline): tell the server if it has the request, and free the slot now. */
  #cancel(stream: number, err: Error): void {
    const p = this.#pending.get(stream);
    if (!p) return;
    if (p.payload === null) this.#wire.cancel(p.channel, stream);
    this.#settle(stream, p, err);
  }

  #send(stream: number, p: Pending): void {
    const payload = p.payload!;
    p.payload = null;
    this.#sent++;
    this.#wire.request(p.channel, stream, payload);
  }

  /** Sends queued requests while slots are free. */
  #pump(): void {
    this.#pumpScheduled = false;
    const q = this.#queue;
    while (this.#sending && this.#sent < this.#maxInflight && this.#queueHead < q.length) {
      const stream = q[this.#queueHead++]!;
      const p = this.#pending.get(stream);
      if (p && p.payload !== null) this.#send(stream, p);
    }
    if (this.#queueHead === q.length) {
      this.#queue = [];
      this.#queueHead = 0;
    } else if (this.#queueHead > 1024 && this.#queueHead * 2 > q.length) {
      this.#queue = q.slice(this.#queueHead);
      this.#queueHead = 0;
    }
  }

  #startSweep(): void {
    this.#sweep = setInterval(() => {
      const now = performance.now();
      let late = false;
      for (const [stream, p] of this.#pending) {
        if (p.deadline > now) continue;
        late ||= p.payload === null; // sent and unanswered: worth a look at the line
        this.#cancel(stream, new TimeoutError("PERILINK_REQUEST_TIMEOUT", "Cannot finish request: no response before its deadline"));
      }
      if (late) this.#wire.timedOut?.();
    }, SWEEP_MS);
    this.#sweep.unref?.();
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error("aborted");
}
