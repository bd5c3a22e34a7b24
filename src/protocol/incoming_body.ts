import { BodyTooLargeError, CancelledError, ProtocolError } from "../errors.ts";
import { WireError } from "./constants.ts";

/** Where a receiver's WINDOW frames go. */
export interface WindowWire {
  window(stream: number, increment: number): void;
}

/**
 * The receiving side of a session's flow control (docs/protocol.md §4.7):
 * how much DATA the peer may still send over all streams. Bytes count
 * against it when they arrive and are given back (WINDOW on stream 0) once
 * read or discarded, half a window at a time.
 */
export class ReceiveWindow {
  readonly wire: WindowWire;
  readonly streamWindow: number;
  #left: number;
  #size: number;
  #unacked = 0;
  /** DATA held for readers who have not taken it yet, over all bodies. */
  buffered = 0;

  /**
   * Session credit goes back as DATA arrives, not as it is read (HTTP/2's
   * usual way): a reader that does not read then stalls only its own
   * stream, never the session's other streams; what is held is bounded by
   * the stream windows alone (the host agent's table, whose sessions many
   * processes share, works so).
   */
  readonly onArrival: boolean;

  constructor(wire: WindowWire, sessionWindow: number, streamWindow: number, onArrival = false) {
    this.wire = wire;
    this.onArrival = onArrival;
    this.#left = this.#size = sessionWindow;
    this.streamWindow = streamWindow;
  }

  /** `bytes` of DATA arrived; past the session's credit it is a fatal FlowControl error. */
  received(bytes: number): void {
    if (bytes > this.#left) {
      throw new ProtocolError(WireError.FlowControl, `Cannot accept DATA: ${bytes} bytes exceed the session's remaining window of ${this.#left}`, "PERILINK_FLOW_CONTROL");
    }
    this.#left -= bytes;
  }

  /** `bytes` were read or thrown away: the peer may send them again. */
  consumed(bytes: number): void {
    if (bytes === 0) return;
    this.#unacked += bytes;
    if (this.#unacked * 2 < this.#size) return;
    this.#left += this.#unacked;
    this.wire.window(0, this.#unacked);
    this.#unacked = 0;
  }

  /** DATA for a stream with no body open (answered, cancelled): counted, then given back. */
  discard(bytes: number): void {
    this.received(bytes);
    this.consumed(bytes);
  }
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });
/** DATA payloads below this are copied together into a tail buffer of TAIL_SIZE. */
const SMALL_CHUNK = 2048;
const TAIL_SIZE = 16 * 1024;

/**
 * A body arriving in DATA frames, read once, in order, as an async iterable
 * of chunks (or `stream()`, `bytes()`, `text()`). It holds at most its
 * stream window: the sender gets credit back (WINDOW) only as the reader
 * takes chunks, so a slow reader stalls only its own stream. A reader that
 * stops early (`break`, `return()`, cancelling the ReadableStream) cancels
 * the body: `onCancel` tells the other side.
 */
export class IncomingBody implements AsyncIterable<Buffer> {
  readonly streamed = true;
  readonly stream: number;
  /** What `bytes()` takes whole when its caller names no limit. */
  defaultLimit = Infinity;
  #window: ReceiveWindow;
  #onCancel: (() => void) | null;
  /** Credit the sender still has on this stream. */
  #left: number;
  #unacked = 0;
  #chunks: Buffer[] = [];
  #head = 0;
  #ended = false;
  #failure: Error | null = null;
  #wake: (() => void) | null = null;
  #taken = false;
  /** Where small chunks are copied together (see `push`). */
  #tail: Buffer | null = null;
  #tailStart = 0;
  #tailEnd = 0;
  /** The last queued chunk is the tail's, from #tailStart: small chunks extend it. */
  #tailQueued = false;
  /** Set when the reader takes progress: the owner's deadline looks again. */
  onProgress: (() => void) | null = null;

  constructor(window: ReceiveWindow, stream: number, onCancel: () => void) {
    this.#window = window;
    this.stream = stream;
    this.#left = window.streamWindow;
    this.#onCancel = onCancel;
  }

  /** True once the last chunk arrived or the body failed: no more DATA is expected. */
  get finished(): boolean {
    return this.#ended || this.#failure !== null;
  }

  /**
   * A DATA frame for this stream. Past the stream's credit: fatal
   * FlowControl; after the END: fatal ProtocolError. A chunk is kept as the
   * view it is only when that holds little more than its own bytes: small
   * chunks are copied together into a shared tail, and a chunk that is a
   * small part of a larger buffer (a record's plaintext) is copied out, so
   * what the body holds stays within about twice what it counts.
   */
  push(chunk: Buffer, end: boolean): void {
    const n = chunk.length;
    if (this.#ended) throw new ProtocolError(WireError.ProtocolError, `Cannot accept DATA: stream ${this.stream}'s body already ended`);
    if (n > this.#left) {
      throw new ProtocolError(WireError.FlowControl, `Cannot accept DATA: ${n} bytes exceed stream ${this.stream}'s remaining window of ${this.#left}`, "PERILINK_FLOW_CONTROL");
    }
    this.#window.received(n);
    this.#left -= n;
    if (this.#window.onArrival) this.#window.consumed(n);
    if (this.#failure !== null) {
      this.#giveBack(n); // cancelled or failed: nobody reads it
      return;
    }
    if (n > 0) {
      if (n < SMALL_CHUNK) this.#append(chunk);
      else {
        this.#chunks.push(chunk.buffer.byteLength > 2 * n ? Buffer.from(chunk) : chunk);
        this.#tailQueued = false;
      }
      this.#window.buffered += n;
    }
    if (end) this.#ended = true;
    this.#signal();
  }

  /**
   * The body will not complete: the reader gets what already arrived, then
   * `err` (or `err` at once with `drop`, and what it had not read is given
   * back to the window — also when the body had ended, or failed before).
   */
  fail(err: Error, drop = false): void {
    if (this.#failure === null) {
      this.#failure = err;
      this.#onCancel = null;
    }
    if (drop) this.#drop();
    this.#signal();
  }

  async next(): Promise<IteratorResult<Buffer, undefined>> {
    if (this.#wake !== null) throw new TypeError("Cannot read body: a read of it is already waiting (read a body from one place)");
    for (;;) {
      if (this.#head < this.#chunks.length) return { done: false, value: this.#take() };
      if (this.#failure !== null) throw this.#failure;
      if (this.#ended) return DONE;
      await new Promise<void>((r) => (this.#wake = r));
    }
  }

  /** The reader stopped: the rest is not wanted. */
  async return(): Promise<IteratorResult<Buffer, undefined>> {
    this.cancel();
    return DONE;
  }

  /** Stops the body here: the other side is told (CANCEL or ERROR), and buffered bytes are given back. */
  cancel(reason = "the reader stopped reading the body"): void {
    const onCancel = this.#onCancel;
    this.fail(new CancelledError(`Cannot read body: ${reason}`), true);
    if (!this.#ended) onCancel?.(); // a body that arrived whole needs no word to the sender
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer, undefined> {
    if (this.#taken) throw new TypeError("Cannot read body: it is already being read (a body is read once)");
    this.#taken = true;
    return this;
  }

  /** The body as a web ReadableStream (pull: a chunk is taken only when the stream asks). */
  readable(): ReadableStream<Uint8Array> {
    const it = this[Symbol.asyncIterator]();
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const r = await it.next();
        if (r.done) controller.close();
        else controller.enqueue(r.value);
      },
      cancel: () => this.cancel(),
    }, { highWaterMark: 0 });
  }

  /** The whole body, at most `limit` bytes (else BodyTooLargeError and the body is cancelled). */
  async bytes(limit = this.defaultLimit, what = "the body"): Promise<Buffer> {
    const parts: Buffer[] = [];
    let size = 0;
    for await (const chunk of this) {
      size += chunk.length;
      if (size > limit) {
        this.cancel(`${what} is larger than ${limit} bytes`);
        throw new BodyTooLargeError(limit, what);
      }
      parts.push(chunk);
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
  }

  async text(limit = this.defaultLimit): Promise<string> {
    return (await this.bytes(limit)).toString("utf8");
  }

  /** Copies a small chunk onto the tail: onto the last queued one when that is the tail's. */
  #append(chunk: Buffer): void {
    const n = chunk.length;
    let tail = this.#tail;
    if (tail === null || this.#tailEnd + n > tail.length) {
      tail = this.#tail = Buffer.allocUnsafe(TAIL_SIZE);
      this.#tailEnd = 0;
      this.#tailQueued = false;
    }
    if (!this.#tailQueued) {
      this.#tailStart = this.#tailEnd;
      this.#chunks.push(EMPTY);
      this.#tailQueued = true;
    }
    chunk.copy(tail, this.#tailEnd);
    this.#tailEnd += n;
    this.#chunks[this.#chunks.length - 1] = tail.subarray(this.#tailStart, this.#tailEnd);
  }

  #take(): Buffer {
    const chunk = this.#chunks[this.#head]!;
    this.#chunks[this.#head++] = EMPTY;
    if (this.#head === this.#chunks.length) {
      this.#chunks.length = 0;
      this.#head = 0;
      this.#tailQueued = false; // the reader has the tail's view: later bytes start a new one
    }
    const n = chunk.length;
    this.#window.buffered -= n;
    this.#giveBack(n);
    if (!this.#ended) {
      this.#unacked += n;
      if (this.#unacked * 2 >= this.#window.streamWindow) {
        this.#left += this.#unacked;
        this.#window.wire.window(this.stream, this.#unacked);
        this.#unacked = 0;
      }
    }
    this.onProgress?.();
    return chunk;
  }

  /** Gives back what is buffered and unread. */
  #drop(): void {
    let n = 0;
    for (let i = this.#head; i < this.#chunks.length; i++) n += this.#chunks[i]!.length;
    this.#chunks = [];
    this.#head = 0;
    this.#tailQueued = false;
    this.#window.buffered -= n;
    this.#giveBack(n);
  }

  /** Read or dropped: the session's credit comes back now, unless it came back on arrival. */
  #giveBack(n: number): void {
    if (!this.#window.onArrival) this.#window.consumed(n);
  }

  #signal(): void {
    const wake = this.#wake;
    if (wake === null) return;
    this.#wake = null;
    wake();
  }
}

const EMPTY = Buffer.alloc(0);

/** A body that came whole in one frame, read through the same interface as a streamed one. */
export class WholeBody implements AsyncIterable<Buffer> {
  readonly streamed = false;
  #payload: Buffer;

  constructor(payload: Buffer) {
    this.#payload = payload;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer, undefined> {
    if (this.#payload.length > 0) yield this.#payload;
    return undefined;
  }

  async bytes(limit = Infinity, what = "the body"): Promise<Buffer> {
    if (this.#payload.length > limit) throw new BodyTooLargeError(limit, what);
    return this.#payload;
  }

  async text(limit = Infinity): Promise<string> {
    return (await this.bytes(limit)).toString("utf8");
  }

  readable(): ReadableStream<Uint8Array> {
    const payload = this.#payload;
    return new ReadableStream<Uint8Array>({
      start(controller) {
        if (payload.length > 0) controller.enqueue(payload);
        controller.close();
      },
    });
  }
}
