import { FRAME_HEADER_SIZE } from "./constants.ts";

/** The part of a socket the writer needs. */
export interface WritableSink {
  write(chunk: Uint8Array): boolean;
  cork(): void;
  uncork(): void;
  readonly destroyed: boolean;
  /** True once `end()` was called: nothing may be written after our own FIN. */
  readonly writableEnded: boolean;
  /** Writes `pieces` (`total` bytes) as one unit: a sealing sink makes them one record. */
  writev?(pieces: readonly Uint8Array[], total: number): boolean;
}

/** Default largest slab: frames are packed into it and written in one call per flush. */
export const DEFAULT_SLAB_SIZE = 64 * 1024;
/** A writer's first slab: a slice of Node's shared buffer pool, so a quiet session holds next to nothing. */
const FIRST_SLAB_SIZE = 2048;

/**
 * Packs frames into a slab and writes them with one `write()` per event-loop
 * turn (the writer corks by batching). Bytes handed to the socket are never
 * overwritten: once a slab is nearly used up a fresh one is taken, and the old
 * one is released by the socket when written. Large payloads skip the copy and
 * go to the socket as they are, behind their header, under cork().
 *
 * Slabs grow with use: nothing is allocated before the first frame, the first
 * slab is 2 KiB (from Node's shared pool), and a slab filled within one turn is
 * followed by one twice as large, up to `slabSize`. A session that writes a
 * little now and then keeps a small slab; one that writes in bursts soon
 * packs them into the largest. (Thousands of idle or short-lived sessions
 * each holding a 64 KiB slab were most of a server's memory after churn.)
 */
export class FrameWriter {
  #sink: WritableSink;
  #slabSize: number;
  #slab: Buffer;
  #start = 0;
  #pos = 0;
  #scheduled = false;
  /** Made on the first frame: a session that never writes never needs it. */
  #flushBound: (() => void) | null = null;
  #ok = true;

  constructor(sink: WritableSink, slabSize = DEFAULT_SLAB_SIZE) {
    this.#sink = sink;
    this.#slabSize = slabSize;
    this.#slab = EMPTY;
  }

  /**
   * From now on frames go to `sink` (the sealed record layer after the
   * handshake, protocol v2). What is packed goes to the old sink first.
   */
  setSink(sink: WritableSink): void {
    this.flush();
    this.#sink = sink;
  }

  /** False once the socket reported backpressure during the last flush. */
  get writable(): boolean {
    return this.#ok;
  }

  /** Bytes packed but not yet handed to the socket. */
  get pending(): number {
    return this.#pos - this.#start;
  }

  /**
   * Queues one frame. `payload` may be bytes or a string (written as UTF-8).
   * The bytes of a large `Uint8Array` payload are referenced until written: do
   * not change them after the call.
   */
  frame(type: number, channel: number, stream: number, payload?: Uint8Array | string, flags = 0): void {
    const len = payload === undefined ? 0 : typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength;
    const need = FRAME_HEADER_SIZE + len;
    if (need <= this.#slabSize >>> 1) {
      if (this.#slab.length - this.#pos < need) this.#newSlab(need);
      this.#header(len, type, flags, channel, stream);
      if (len > 0) {
        if (typeof payload === "string") this.#slab.write(payload, this.#pos, "utf8");
        else this.#slab.set(payload!, this.#pos);
        this.#pos += len;
      }
      this.#schedule();
      return;
    }
    // Large frame: header in the slab, payload by reference, one corked batch.
    if (this.#slab.length - this.#pos < FRAME_HEADER_SIZE) this.#newSlab(FRAME_HEADER_SIZE);
    this.#header(len, type, flags, channel, stream);
    const sink = this.#sink;
    sink.cork();
    this.flush();
    const body = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload!;
    if (!this.#closed()) this.#ok = sink.write(body) && this.#ok;
    sink.uncork();
  }

  /**
   * Queues one frame as a write of its own — after what is packed, header
   * and payload together — so that a sealing sink makes it one record and
   * the receiver reads it in place, with no copy to put its parts together.
   * For DATA chunks sized to fill a record. Falls back to `frame()` on a
   * sink that cannot take pieces.
   */
  frameAlone(type: number, channel: number, stream: number, payload: Uint8Array, flags = 0): void {
    const sink = this.#sink;
    if (sink.writev === undefined || payload.byteLength === 0) return this.frame(type, channel, stream, payload, flags);
    this.flush();
    if (this.#closed()) return;
    const h = ALONE_HEADER;
    h.writeUInt32BE(payload.byteLength, 0);
    h[4] = type;
    h[5] = flags;
    h.writeUInt32BE(channel >>> 0, 8);
    h.writeUInt32BE(stream >>> 0, 12);
    ALONE[1] = payload;
    this.#ok = sink.writev(ALONE, FRAME_HEADER_SIZE + payload.byteLength) && this.#ok;
    ALONE[1] = EMPTY;
  }

  /** Hands every packed byte to the socket now. */
  flush(): void {
    this.#scheduled = false;
    if (this.#pos === this.#start) return;
    if (this.#closed()) {
      this.#start = this.#pos; // nobody can receive it any more: drop it
      return;
    }
    const chunk = this.#slab.subarray(this.#start, this.#pos);
    this.#start = this.#pos;
    this.#ok = this.#sink.write(chunk);
    if (this.#slab.length - this.#pos < 512) this.#newSlab(0);
  }

  #header(len: number, type: number, flags: number, channel: number, stream: number): void {
    const slab = this.#slab;
    const p = this.#pos;
    slab.writeUInt32BE(len, p);
    slab[p + 4] = type;
    slab[p + 5] = flags;
    slab[p + 6] = 0;
    slab[p + 7] = 0;
    slab.writeUInt32BE(channel >>> 0, p + 8);
    slab.writeUInt32BE(stream >>> 0, p + 12);
    this.#pos = p + FRAME_HEADER_SIZE;
  }

  /**
   * Takes a fresh slab with room for `need` bytes. One asked for while frames
   * are pending (the slab filled within this turn) is twice as large as the
   * last, up to the largest, and the pending bytes move into it, so a turn is
   * still one write; one asked for after a flush keeps the size.
   */
  #newSlab(need: number): void {
    const old = this.#slab;
    const pending = this.#pos - this.#start;
    let size = old.length === 0 ? FIRST_SLAB_SIZE : pending > 0 ? old.length * 2 : old.length;
    while (size < need) size *= 2;
    size = Math.min(size, this.#slabSize);
    const slab = Buffer.allocUnsafe(size);
    let moved = 0;
    if (pending > 0) {
      if (pending + need <= size) {
        old.copy(slab, 0, this.#start, this.#pos);
        moved = pending;
      } else if (!this.#closed()) {
        this.#ok = this.#sink.write(old.subarray(this.#start, this.#pos));
      }
    }
    this.#slab = slab;
    this.#start = 0;
    this.#pos = moved;
  }

  /** The socket takes no more bytes: destroyed, or ended by us. */
  #closed(): boolean {
    return this.#sink.destroyed || this.#sink.writableEnded;
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#flushBound ?? this.#bindFlush());
  }

  // Apart from #schedule, which runs per frame: a function that holds a closure
  // allocates its context on every call, whether it makes the closure or not.
  #bindFlush(): () => void {
    return (this.#flushBound = () => this.flush());
  }
}

const EMPTY = Buffer.alloc(0);
/** frameAlone()'s header and pieces: shared, as a sealing sink has encrypted them before the call returns. */
const ALONE_HEADER = Buffer.alloc(FRAME_HEADER_SIZE);
const ALONE: Uint8Array[] = [ALONE_HEADER, EMPTY];
