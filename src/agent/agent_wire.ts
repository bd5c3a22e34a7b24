/**
 * The host agent's wire, between an application's process and the agent
 * over the agent's Unix socket (docs/client.md, "The host agent"). Each
 * message is one frame:
 *
 *   u32 header length | u32 payload length | header (JSON) | payload (bytes)
 *
 * The header says what the message is (`t`) and names links and requests by
 * numbers the application chose; the payload is a request's or response's
 * body, or a one-way message, passed on as it is. Both lengths are bounded
 * (the receiver's limits), and a frame past them ends the connection.
 */

import { ProtocolError } from "../errors.ts";

/** Largest header accepted, in bytes. */
export const MAX_HEADER_BYTES = 16 * 1024;

export type Header = { t: string } & Record<string, unknown>;

const EMPTY = Buffer.alloc(0);

export function encodeFrame(header: Header, payload: Uint8Array = EMPTY): Buffer[] {
  const h = Buffer.from(JSON.stringify(header), "utf8");
  const prefix = Buffer.allocUnsafe(8);
  prefix.writeUInt32BE(h.length, 0);
  prefix.writeUInt32BE(payload.length, 4);
  return payload.length === 0 ? [prefix, h] : [prefix, h, payload as Buffer];
}

/**
 * Splits a byte stream into frames. `maxPayload` bounds what one frame may
 * carry, so a peer can make the decoder hold at most one frame of that size.
 */
export class FrameReader {
  /** Bytes of a frame not yet whole, as read: joined once, when the frame is (a copy per read would cost the square of its size). */
  #pieces: Buffer[] = [];
  #held = 0;
  #need = 0;
  #maxPayload: number;
  #onFrame: (header: Header, payload: Buffer) => void;

  constructor(maxPayload: number, onFrame: (header: Header, payload: Buffer) => void) {
    this.#maxPayload = maxPayload;
    this.#onFrame = onFrame;
  }

  /** Bytes held for a frame not yet whole. */
  get buffered(): number {
    return this.#held;
  }

  /** Throws ProtocolError on a malformed or oversized frame: the caller ends the connection. */
  push(chunk: Buffer): void {
    if (this.#held > 0) {
      this.#pieces.push(chunk);
      this.#held += chunk.length;
      if (this.#held < 8 || (this.#need > 0 && this.#held < this.#need)) return;
      chunk = Buffer.concat(this.#pieces, this.#held);
      this.#pieces = [];
      this.#held = 0;
    }
    this.#need = 0;
    const buf = chunk;
    let at = 0;
    while (buf.length - at >= 8) {
      const hl = buf.readUInt32BE(at);
      const pl = buf.readUInt32BE(at + 4);
      if (hl === 0 || hl > MAX_HEADER_BYTES) throw new ProtocolError(1, `agent frame header of ${hl} bytes (at most ${MAX_HEADER_BYTES})`);
      if (pl > this.#maxPayload) throw new ProtocolError(1, `agent frame payload of ${pl} bytes (at most ${this.#maxPayload})`);
      if (buf.length - at < 8 + hl + pl) {
        this.#need = 8 + hl + pl;
        break;
      }
      let header: unknown;
      try {
        header = JSON.parse(buf.toString("utf8", at + 8, at + 8 + hl));
      } catch {
        throw new ProtocolError(1, "agent frame header is not JSON");
      }
      if (header === null || typeof header !== "object" || typeof (header as Header).t !== "string") throw new ProtocolError(1, "agent frame header has no type");
      const payload = pl === 0 ? EMPTY : buf.subarray(at + 8 + hl, at + 8 + hl + pl);
      at += 8 + hl + pl;
      this.#onFrame(header as Header, payload);
    }
    if (at === buf.length) return;
    const rest = buf.subarray(at);
    // What stays held is a copy only when it is a small part of a large read.
    const kept = rest.buffer.byteLength > 4 * rest.length + 65536 ? Buffer.from(rest) : rest;
    this.#pieces = [kept];
    this.#held = kept.length;
  }
}

/** A number the peer chose to name a link or a request: a positive safe integer. */
export function idOf(v: unknown): number | null {
  return typeof v === "number" && Number.isSafeInteger(v) && v > 0 ? v : null;
}
