import { BodyTooLargeError } from "../errors.ts";
import { FRAME_HEADER_SIZE } from "./constants.ts";
import type { SendCredit } from "./send_credit.ts";

/**
 * The largest DATA payload for records of `recordPlaintext` bytes: with its
 * header it fills one sealed record, so the receiver finds each chunk whole
 * in one record and reads it in place (a larger frame spans records, and the
 * receiver allocates and copies to put it together: most of a streaming
 * server's garbage).
 */
export function dataChunkFor(recordPlaintext: number): number {
  return recordPlaintext - FRAME_HEADER_SIZE;
}

/** What may be sent as a streamed body: chunks from an async iterable or a ReadableStream, or a Blob. */
export type StreamSource = AsyncIterable<Uint8Array | string> | ReadableStream<Uint8Array> | Blob;
/** Any body: whole bytes or text, or a stream source. */
export type BodySource = Uint8Array | string | StreamSource;

/** Whether `value` is a stream source (not bytes, not a string). */
export function isStreamSource(value: unknown): value is StreamSource {
  if (value === null || typeof value !== "object" || value instanceof Uint8Array) return false;
  return typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function" || value instanceof Blob || (typeof ReadableStream !== "undefined" && value instanceof ReadableStream);
}

/**
 * Lets go of a stream source that will not be sent (its request was
 * answered or cancelled before the handler returned it): an async
 * generator's `finally` runs, a Node.js stream is destroyed, a
 * ReadableStream cancelled.
 */
export function discardSource(source: StreamSource): void {
  try {
    if (source instanceof Blob) return;
    if (typeof ReadableStream !== "undefined" && source instanceof ReadableStream) {
      if (!source.locked) void source.cancel().catch(() => {});
      return;
    }
    void (source as AsyncIterable<unknown>)[Symbol.asyncIterator]().return?.()?.catch(() => {});
  } catch {
    // a source that cannot even be stopped holds nothing of ours
  }
}

/** A stream source read whole, at most `limit` bytes (else BodyTooLargeError naming `what`): for a peer that takes no streamed bodies. */
export async function gatherSource(source: StreamSource | OutgoingBody, limit: number, what: string): Promise<Buffer> {
  const body = source instanceof OutgoingBody ? source : new OutgoingBody(source, 0, true);
  return body.gather(limit, what);
}

/** Where an outgoing body's DATA frames go, and how the socket says "wait". */
export interface DataWire {
  data(stream: number, chunk: Uint8Array, end: boolean): void;
  /** A promise while the socket holds too much unsent output, else null. */
  writable(): Promise<void> | null;
}

const EMPTY = new Uint8Array(0);

/**
 * A body sent as DATA frames (docs/protocol.md §4.7), within the credit the
 * receiver gives (send_credit.ts), in frames no larger than its maxFrame,
 * and only while the socket takes output. It reads its source one chunk at
 * a time, so the sender holds a chunk, not the body.
 *
 * Bytes, text and a Blob can be sent again from their start. A stream
 * source can be sent again while everything it sent is still kept: the
 * chunks are kept until the receiver gives the stream credit (it read some,
 * so the request started) or they pass `keepLimit`. That is what lets a
 * stream refused by a draining server go to the next one whole.
 */
export class OutgoingBody {
  #source: StreamSource | Uint8Array;
  #iterator: AsyncIterator<Uint8Array | string> | null = null;
  #kept: Uint8Array[] | null = [];
  #keptBytes = 0;
  #keepLimit: number;
  /** Chunks to send before reading on (a replay of what was kept). */
  #replay: Uint8Array[] = [];
  #started = false;
  #rewound = false;
  /** The send in progress: a new one (after a rewind) starts once it has stopped. */
  #running: Promise<boolean> | null = null;
  /** Bytes handed to the wire by the current send. */
  sent = 0;

  /** No send follows the one running: the source is let go of when it ends. */
  #final: boolean;

  /** `once`: it is sent once (no rewind), and its source let go of when that send ends. */
  constructor(source: BodySource, keepLimit: number, once = false) {
    this.#source = typeof source === "string" ? Buffer.from(source, "utf8") : source;
    this.#keepLimit = once ? 0 : keepLimit;
    this.#final = once;
  }

  /** The request is over: the source is let go of now, or when the send still running ends. */
  finish(): void {
    this.#final = true;
    if (this.#running === null) this.dispose();
  }

  /** Bytes, text and Blobs: they can always be sent again. */
  get replayable(): boolean {
    return this.#source instanceof Uint8Array || this.#source instanceof Blob;
  }

  /** Prepares the body to be sent again from its start; false when it cannot be (a stream that let go of what it sent). */
  rewind(): boolean {
    if (!this.#started) return true;
    if (!this.replayable && this.#kept === null) return false;
    this.#rewound = true; // done by the next send, once the last one has stopped reading the source
    return true;
  }

  /** The receiver took some of it: a stream source can no longer be replayed. */
  release(): void {
    this.#kept = null;
    this.#keptBytes = 0;
  }

  /**
   * Sends the body on `stream` in DATA payloads of at most `maxChunk` bytes
   * (the receiver's maxFrame or less; see dataChunkFor); returns false when
   * the stream closed first (answered, cancelled). Throws the source's error.
   */
  async send(stream: number, credit: SendCredit, maxChunk: number, wire: DataWire, progress?: () => void): Promise<boolean> {
    const before = this.#running;
    const run = (async () => {
      if (before !== null) await before.catch(() => false); // one reader of the source at a time
      this.#restart();
      return this.#send(stream, credit, maxChunk, wire, progress);
    })();
    this.#running = run;
    const ended = (): void => {
      if (this.#running !== run) return;
      this.#running = null;
      if (this.#final) this.dispose();
    };
    run.then(ended, ended);
    return run;
  }

  async #send(stream: number, credit: SendCredit, maxChunk: number, wire: DataWire, progress?: () => void): Promise<boolean> {
    this.#started = true;
    for (;;) {
      const chunk = await this.#next();
      if (chunk === null) break;
      let off = 0;
      while (off < chunk.length) {
        if (!credit.isOpen(stream)) return false;
        const n = Math.min(credit.available(stream), maxChunk, chunk.length - off);
        if (n === 0) {
          await credit.wait(stream);
          continue;
        }
        const full = wire.writable();
        if (full !== null) {
          await full;
          continue; // the stream may have closed while the socket drained
        }
        wire.data(stream, off === 0 && n === chunk.length ? chunk : chunk.subarray(off, off + n), false);
        credit.take(stream, n);
        this.sent += n;
        off += n;
        progress?.();
      }
    }
    if (!credit.isOpen(stream)) return false;
    wire.data(stream, EMPTY, true);
    return true;
  }

  /** Reads the whole body (from its start, as a send would), at most `limit` bytes. */
  async gather(limit: number, what: string): Promise<Buffer> {
    const parts: Uint8Array[] = [];
    let size = 0;
    await this.#running?.catch(() => false);
    this.#restart();
    this.#started = true;
    try {
      for (let chunk = await this.#next(); chunk !== null; chunk = await this.#next()) {
        size += chunk.byteLength;
        if (size > limit) throw new BodyTooLargeError(limit, what);
        parts.push(chunk);
      }
    } finally {
      if (this.#final) this.dispose();
    }
    return Buffer.concat(parts, size);
  }

  /** After a rewind: the next read starts from the body's start (a replay of what was kept, for a stream). */
  #restart(): void {
    if (!this.#rewound) return;
    this.#rewound = false;
    this.sent = 0;
    if (this.replayable) {
      void this.#iterator?.return?.()?.catch(() => {});
      this.#iterator = null;
    } else if (this.#kept === null) {
      throw new Error("Cannot send body again: it was a stream, and the server had read part of it");
    } else {
      this.#replay = this.#kept.slice();
    }
  }

  /** Stops reading the source (the request is over). */
  dispose(): void {
    this.#kept = null;
    this.#replay = [];
    void this.#iterator?.return?.()?.catch(() => {});
    this.#iterator = null;
  }

  async #next(): Promise<Uint8Array | null> {
    if (this.#replay.length > 0) return this.#replay.shift()!;
    const src = this.#source;
    if (src instanceof Uint8Array) {
      if (this.#iterator !== null) return null;
      this.#iterator = DONE_ITERATOR;
      return src.byteLength > 0 ? src : null;
    }
    this.#iterator ??= iteratorOf(src);
    const r = await this.#iterator.next();
    if (r.done) return null;
    const v = r.value;
    const chunk = typeof v === "string" ? Buffer.from(v, "utf8") : v;
    if (!(chunk instanceof Uint8Array)) throw new TypeError("Cannot send body: a chunk is neither bytes nor a string");
    this.#keep(chunk);
    return chunk;
  }

  #keep(chunk: Uint8Array): void {
    if (this.#kept === null || this.replayable) return;
    this.#keptBytes += chunk.byteLength;
    if (this.#keptBytes > this.#keepLimit) this.release();
    else this.#kept.push(chunk);
  }
}

const DONE_ITERATOR: AsyncIterator<Uint8Array> = { next: async () => ({ done: true, value: undefined }) };

function iteratorOf(src: StreamSource): AsyncIterator<Uint8Array | string> {
  if (src instanceof Blob) return iteratorOf(src.stream());
  const it = (src as AsyncIterable<Uint8Array | string>)[Symbol.asyncIterator];
  if (typeof it === "function") return it.call(src);
  const reader = (src as ReadableStream<Uint8Array>).getReader();
  return {
    next: () => reader.read() as Promise<IteratorResult<Uint8Array>>,
    return: async () => {
      await reader.cancel();
      return { done: true, value: undefined };
    },
  };
}
