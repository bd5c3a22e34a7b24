import { FrameTooLargeError, ProtocolError } from "../errors.ts";
import { FRAME_HEADER_SIZE, FrameType, MAX_FRAME_TYPE, MAX_PING_PAYLOAD, WireError } from "./constants.ts";

/** Receives decoded frames. `payload` is a view that stays valid after the call returns. */
export interface FrameSink {
  onFrame(type: number, flags: number, channel: number, stream: number, payload: Buffer): void;
  /**
   * Asks for `bytes` more memory to hold a frame that arrives in parts. On
   * false the decoder pauses (holding the rest of the chunk) and asks again
   * at `resume()`. Without it, every allocation is granted.
   */
  reserve?(bytes: number): boolean;
}

const EMPTY = Buffer.alloc(0);

/**
 * A split frame's body is first held in this much (or what arrived, if more), and grows by this
 * factor when full: what a frame in progress holds is at most four times what arrived, plus 4 KiB.
 */
const BODY_FIRST_ALLOCATION = 4 * 1024;
const BODY_GROWTH = 4;

/**
 * Streaming decoder for length-prefixed frames (docs/protocol.md §3).
 *
 * Total over hostile input: every byte sequence yields frames or a thrown
 * `ProtocolError`; nothing else escapes `push()`.
 *
 * A frame that lies inside one received chunk is handed over as a view of that
 * chunk (no copy). Only a frame split across chunks is copied into a buffer of
 * its own, which grows as its bytes arrive: 4 KiB first, then four times as
 * much each time it is full, up to the frame's size. A header alone never
 * makes the decoder allocate the body it announces, the memory held is at
 * most four times what arrived (plus 64 KiB), and each growth is asked of the
 * sink (`reserve`), so a server can keep the sum within its budget.
 * `buffered` says how many bytes are held. The partial-header buffer is
 * reused.
 *
 * The sink may call `pause()` from `onFrame`; the unread rest of the chunk is
 * then held (as a view) until `resume()`, so a paused session reads nothing more.
 */
export class FrameDecoder {
  #sink: FrameSink;
  #maxPayload: number;
  #head = Buffer.allocUnsafe(FRAME_HEADER_SIZE);
  #headLen = 0;
  #body: Buffer | null = null;
  #bodyLen = 0;
  #bodyNeed = 0;
  #type = 0;
  #flags = 0;
  #channel = 0;
  #stream = 0;
  #paused = false;
  #held: Buffer | null = null;
  /** A `limit()` in force: the limit the decoder was made with, and the error for a frame past the lower one (null: lifted meanwhile). */
  #limited: { full: number; tooLarge: (len: number) => Error | null } | null = null;

  constructor(sink: FrameSink, maxPayload: number) {
    this.#sink = sink;
    this.#maxPayload = maxPayload;
  }

  /** Lowers the largest payload accepted from the next frame header on; a frame past it throws `tooLarge(len)` unless that lifts the limit. */
  limit(maxPayload: number, tooLarge: (len: number) => Error | null): void {
    const full = this.#limited?.full ?? this.#maxPayload;
    this.#limited = { full, tooLarge };
    this.#maxPayload = Math.min(full, maxPayload);
  }

  /** Back to the payload limit the decoder was made with. */
  unlimit(): void {
    if (this.#limited) this.#maxPayload = this.#limited.full;
    this.#limited = null;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Bytes held for frames not yet complete and for input held while paused. */
  get buffered(): number {
    return this.#headLen + (this.#body === null ? 0 : this.#body.length) + (this.#held === null ? 0 : this.#held.length);
  }

  /** True while a frame has arrived in part (its header or some of its payload). */
  get midFrame(): boolean {
    return this.#headLen > 0 || this.#body !== null;
  }

  /** Bytes still to come of the frame in progress (its header's rest, or its payload's); 0 between frames. */
  get frameRemaining(): number {
    if (this.#body !== null) return this.#bodyNeed - this.#bodyLen;
    return this.#headLen > 0 ? FRAME_HEADER_SIZE - this.#headLen : 0;
  }

  /** True when no partial frame or held bytes are buffered. */
  get idle(): boolean {
    return this.#headLen === 0 && this.#body === null && this.#held === null;
  }

  pause(): void {
    this.#paused = true;
  }

  /** Continues with held bytes, if any. May throw like `push()`. */
  resume(): void {
    this.#paused = false;
    const held = this.#held;
    if (held !== null) {
      this.#held = null;
      this.push(held);
    }
  }

  push(chunk: Buffer): void {
    if (this.#paused || this.#held !== null) {
      this.#held = this.#held === null ? chunk : Buffer.concat([this.#held, chunk]);
      return;
    }
    const end = chunk.length;
    let off = 0;
    while (off < end) {
      if (this.#paused) {
        this.#held = chunk.subarray(off);
        return;
      }
      if (this.#body !== null) {
        off = this.#fillBody(chunk, off);
        continue;
      }
      if (this.#headLen === 0 && end - off >= FRAME_HEADER_SIZE) {
        const len = this.#readHeader(chunk, off);
        off += FRAME_HEADER_SIZE;
        if (end - off >= len) {
          const payload = len === 0 ? EMPTY : chunk.subarray(off, off + len);
          off += len;
          this.#sink.onFrame(this.#type, this.#flags, this.#channel, this.#stream, payload);
        } else {
          this.#startBody(len);
        }
        continue;
      }
      const take = Math.min(FRAME_HEADER_SIZE - this.#headLen, end - off);
      chunk.copy(this.#head, this.#headLen, off, off + take);
      this.#headLen += take;
      off += take;
      if (this.#headLen === FRAME_HEADER_SIZE) {
        this.#headLen = 0;
        const len = this.#readHeader(this.#head, 0);
        if (len === 0) {
          this.#sink.onFrame(this.#type, this.#flags, this.#channel, this.#stream, EMPTY);
        } else {
          this.#startBody(len);
        }
      }
    }
  }

  #readHeader(buf: Buffer, off: number): number {
    const len = buf.readUInt32BE(off);
    const type = buf[off + 4]!;
    if (type === 0 || type > MAX_FRAME_TYPE) {
      throw new ProtocolError(WireError.ProtocolError, `Cannot decode frame: unknown frame type ${type}`);
    }
    if (len > this.#maxPayload) {
      const limited = this.#limited?.tooLarge(len) ?? null;
      if (limited !== null) throw limited;
      if (len > this.#maxPayload) throw new FrameTooLargeError(WireError.FrameTooLarge, len, this.#maxPayload);
    }
    if (type === FrameType.Ping && len > MAX_PING_PAYLOAD) {
      throw new ProtocolError(WireError.ProtocolError, `Cannot accept PING: its payload of ${len} bytes exceeds ${MAX_PING_PAYLOAD}`);
    }
    this.#type = type;
    this.#flags = buf[off + 5]!;
    this.#channel = buf.readUInt32BE(off + 8);
    this.#stream = buf.readUInt32BE(off + 12);
    return len;
  }

  #startBody(len: number): void {
    this.#body = EMPTY; // nothing is allocated until payload bytes arrive
    this.#bodyLen = 0;
    this.#bodyNeed = len;
  }

  /** Copies what `chunk` has of the frame's payload; returns the offset reached (unchanged when paused). */
  #fillBody(chunk: Buffer, off: number): number {
    let body = this.#body!;
    const take = Math.min(this.#bodyNeed - this.#bodyLen, chunk.length - off);
    const filled = this.#bodyLen + take;
    if (filled > body.length) {
      const size = Math.min(this.#bodyNeed, Math.max(BODY_FIRST_ALLOCATION, body.length * BODY_GROWTH, filled));
      if (this.#sink.reserve !== undefined && !this.#sink.reserve(size - body.length)) {
        this.#paused = true;
        return off;
      }
      const grown = Buffer.allocUnsafe(size);
      body.copy(grown, 0, 0, this.#bodyLen);
      this.#body = body = grown;
    }
    chunk.copy(body, this.#bodyLen, off, off + take);
    this.#bodyLen = filled;
    if (filled === this.#bodyNeed) {
      this.#body = null;
      this.#sink.onFrame(this.#type, this.#flags, this.#channel, this.#stream, body);
    }
    return off + take;
  }
}
