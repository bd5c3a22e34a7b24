/**
 * The host agent's wire, between an application's process and the agent
 * over the agent's Unix socket (docs/client.md, "The host agent"). Each
 * message is one frame:
 *
 *   u32 header length | u32 payload length | header | payload (bytes)
 *
 * The header says what the message is (`t`) and names links and requests by
 * numbers the application chose; the payload is a request's or response's
 * body, or a one-way message, passed on as it is. Both lengths are bounded
 * (the receiver's limits), and a frame past them ends the connection.
 *
 * A header is JSON (its first byte is `{`), or — for the frames every
 * request and message makes, once both sides said `wire: 2` in their hellos
 * — a few bytes: a kind byte (1 request, 2 response, 3 message, 4 send,
 * 5 sent), then its numbers as 48-bit unsigned integers, and for a request
 * a flags byte and the options it names. Both forms decode to the same
 * header, so a peer of either version is understood.
 */

import { ProtocolError } from "../errors.ts";

/** Largest header accepted, in bytes. */
export const MAX_HEADER_BYTES = 16 * 1024;

/** The wire version a hello offers: 2 understands compact headers. */
export const WIRE_VERSION = 2;

export type Header = { t: string } & Record<string, unknown>;

/** What frames are written to (a net.Socket). */
export interface FrameSink {
  write(chunk: Buffer): unknown;
}

const EMPTY = Buffer.alloc(0);
/** Payloads up to this size share one buffer (one write) with their frame's header. */
const INLINE_PAYLOAD = 4096;
const U48 = 2 ** 48;

const KIND = { request: 1, response: 2, message: 3, send: 4, sent: 5 } as const;
const KIND_NAME = ["", "request", "response", "message", "send", "sent"] as const;
const F_TIMEOUT = 1;
const F_MAX_BYTES = 2;
const F_IDEMPOTENT = 4;
const F_WAIT = 8;
const F_CANCELLABLE = 16;

const isU48 = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0 && v < U48;

/**
 * The compact header's length for `h`, or 0 when `h` has no compact form
 * (another kind, a field it does not carry, a number it cannot hold): then
 * the frame goes as JSON.
 */
function compactLength(h: Header): number {
  switch (h.t) {
    case "response":
    case "sent":
      return isU48(h.id) && keys(h) === 2 ? 7 : 0;
    case "message":
      return isU48(h.link) && keys(h) === 2 ? 7 : 0;
    case "send":
      return isU48(h.id) && isU48(h.link) && keys(h) === 3 ? 13 : 0;
    case "request": {
      if (!isU48(h.id) || !isU48(h.link)) return 0;
      let n = 3;
      let len = 14;
      if (h.timeoutMs !== undefined) {
        if (!isU48(h.timeoutMs)) return 0;
        n++;
        len += 6;
      }
      if (h.maxBytes !== undefined) {
        if (!isU48(h.maxBytes)) return 0;
        n++;
        len += 6;
      }
      for (const f of ["idempotent", "waitForReady", "cancellable"] as const) {
        if (h[f] === undefined) continue;
        if (h[f] !== true) return 0;
        n++;
      }
      return keys(h) === n ? len : 0;
    }
    default:
      return 0;
  }
}

function keys(h: Header): number {
  let n = 0;
  for (const _ in h) n++;
  return n;
}

function writeCompact(h: Header, b: Buffer, at: number): void {
  b[at] = KIND[h.t as keyof typeof KIND];
  switch (h.t) {
    case "response":
    case "sent":
      b.writeUIntBE(h.id as number, at + 1, 6);
      return;
    case "message":
      b.writeUIntBE(h.link as number, at + 1, 6);
      return;
    case "send":
      b.writeUIntBE(h.id as number, at + 1, 6);
      b.writeUIntBE(h.link as number, at + 7, 6);
      return;
    default: {
      b.writeUIntBE(h.id as number, at + 1, 6);
      b.writeUIntBE(h.link as number, at + 7, 6);
      let flags = 0;
      let p = at + 14;
      if (h.timeoutMs !== undefined) {
        flags |= F_TIMEOUT;
        b.writeUIntBE(h.timeoutMs as number, p, 6);
        p += 6;
      }
      if (h.maxBytes !== undefined) {
        flags |= F_MAX_BYTES;
        b.writeUIntBE(h.maxBytes as number, p, 6);
      }
      if (h.idempotent === true) flags |= F_IDEMPOTENT;
      if (h.waitForReady === true) flags |= F_WAIT;
      if (h.cancellable === true) flags |= F_CANCELLABLE;
      b[at + 13] = flags;
    }
  }
}

function readCompact(b: Buffer, at: number, len: number): Header {
  const kind = KIND_NAME[b[at]!];
  const need = kind === "send" ? 13 : kind === "request" ? 14 : 7;
  if (kind === undefined || kind === "" || len < need) throw new ProtocolError(1, `agent frame header of kind ${b[at]} and ${len} bytes is not one this wire knows`);
  if (kind === "response" || kind === "sent") return exact({ t: kind, id: b.readUIntBE(at + 1, 6) }, len, 7);
  if (kind === "message") return exact({ t: kind, link: b.readUIntBE(at + 1, 6) }, len, 7);
  const h: Header = { t: kind, id: b.readUIntBE(at + 1, 6), link: b.readUIntBE(at + 7, 6) };
  if (kind === "send") return exact(h, len, 13);
  const flags = b[at + 13]!;
  let p = 14;
  if (flags & F_TIMEOUT) {
    if (len < p + 6) throw new ProtocolError(1, "agent request header ends inside its timeout");
    h.timeoutMs = b.readUIntBE(at + p, 6);
    p += 6;
  }
  if (flags & F_MAX_BYTES) {
    if (len < p + 6) throw new ProtocolError(1, "agent request header ends inside its byte limit");
    h.maxBytes = b.readUIntBE(at + p, 6);
    p += 6;
  }
  if (flags & F_IDEMPOTENT) h.idempotent = true;
  if (flags & F_WAIT) h.waitForReady = true;
  if (flags & F_CANCELLABLE) h.cancellable = true;
  return exact(h, len, p);
}

function exact(h: Header, len: number, want: number): Header {
  if (len !== want) throw new ProtocolError(1, `agent frame header of kind ${h.t} is ${len} bytes, not ${want}`);
  return h;
}

/**
 * Writes one frame to `sink`: one buffer for header and a small payload, or
 * the header's and the payload as it is. `compact`: the peer said `wire: 2`.
 */
export function writeFrame(sink: FrameSink, header: Header, payload: Uint8Array = EMPTY, compact = false): void {
  const cl = compact ? compactLength(header) : 0;
  const json = cl === 0 ? JSON.stringify(header) : "";
  const hl = cl === 0 ? Buffer.byteLength(json) : cl;
  const pl = payload.length;
  const inline = pl <= INLINE_PAYLOAD;
  const b = Buffer.allocUnsafe(8 + hl + (inline ? pl : 0));
  b.writeUInt32BE(hl, 0);
  b.writeUInt32BE(pl, 4);
  if (cl === 0) b.write(json, 8, "utf8");
  else writeCompact(header, b, 8);
  if (inline) {
    if (pl > 0) b.set(payload, 8 + hl);
    sink.write(b);
  } else {
    sink.write(b);
    sink.write(payload as Buffer);
  }
}

/** The frame's bytes (for tests and tools that write frames by hand). */
export function encodeFrame(header: Header, payload: Uint8Array = EMPTY, compact = false): Buffer[] {
  const out: Buffer[] = [];
  writeFrame({ write: (b) => out.push(b) }, header, payload, compact);
  return out;
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
      let header: Header;
      if (buf[at + 8] === 0x7b) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(buf.toString("utf8", at + 8, at + 8 + hl));
        } catch {
          throw new ProtocolError(1, "agent frame header is not JSON");
        }
        if (parsed === null || typeof parsed !== "object" || typeof (parsed as Header).t !== "string") throw new ProtocolError(1, "agent frame header has no type");
        header = parsed as Header;
      } else header = readCompact(buf, at + 8, hl);
      const payload = pl === 0 ? EMPTY : buf.subarray(at + 8 + hl, at + 8 + hl + pl);
      at += 8 + hl + pl;
      this.#onFrame(header, payload);
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
