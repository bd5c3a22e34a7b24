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
 * request and message makes, once both sides said `wire: 3` in their hellos
 * — a few bytes: a kind byte (1 request, 2 response, 3 message, 4 send,
 * 5 sent), a flags byte (the options a request names), then its numbers as
 * 48-bit unsigned integers. Both forms decode to the same
 * header, so a peer of either version is understood.
 *
 * Streamed bodies (`stream`, then `streaming`, `data`, `window`, `stopbody`,
 * `bodyerror`, `cancel`: src/agent/peer_streams.ts and agent_connection.ts)
 * go with JSON headers, within the credit each hello's `window` grants.
 */

import type { LinkRequestOptions } from "../client/link.ts";
import { ProtocolError } from "../errors.ts";
import { dataChunkFor } from "../protocol/outgoing_body.ts";
import { LARGE_RECORD_PLAINTEXT } from "../protocol/record_layer.ts";

/** Largest header accepted, in bytes. */
export const MAX_HEADER_BYTES = 16 * 1024;

/**
 * The wire version a hello offers: 3 is the compact headers below (kind,
 * flags, numbers). Compact frames go only to a peer that offered exactly
 * this version; any change of their layout takes a new number.
 */
export const WIRE_VERSION = 3;

export type Header = { t: string } & Record<string, unknown>;

/**
 * Credit for bodies streamed through the agent, as the protocol's WINDOW
 * gives it (docs/protocol.md §4.7): what each side lets the other send per
 * stream, and over all streams of one connection. A hello says what its
 * sender grants (`window: [stream, connection]`); a peer whose hello says
 * nothing streams nothing.
 */
export const STREAM_WINDOW = 256 * 1024;
export const CONNECTION_WINDOW = 1024 * 1024;
/**
 * The largest `data` payload over the agent's socket: the largest DATA to a
 * server that takes large records (docs/protocol.md §2.5), so the agent
 * forwards each chunk as one DATA frame in one record (a server of 16 KiB
 * records gets it in four).
 */
export const AGENT_CHUNK_BYTES = dataChunkFor(LARGE_RECORD_PLAINTEXT);

/** The `window` of a hello: `[stream, connection]` credit the peer grants, or null when it offered none (or nonsense). */
export function windowOf(v: unknown): readonly [number, number] | null {
  if (!Array.isArray(v) || v.length !== 2) return null;
  const [stream, connection] = v as unknown[];
  const ok = (n: unknown): n is number => typeof n === "number" && Number.isInteger(n) && n >= 1024 && n <= 0x7fff_ffff;
  return ok(stream) && ok(connection) && connection >= stream ? [stream, connection] : null;
}

/** What frames are written to (a net.Socket). */
export interface FrameSink {
  write(chunk: Buffer): unknown;
}

const EMPTY = Buffer.alloc(0);
/** Payloads up to this size share one buffer (one write) with their frame's header. */
const INLINE_PAYLOAD = 4096;
const U48 = 2 ** 48;

/** Each compact kind: its number on the wire, the numbers it always has, the numbers it may have, the flags it may have. */
const SHAPES: Record<string, readonly [number, readonly string[], readonly string[], readonly string[]]> = {
  request: [1, ["id", "link"], ["timeoutMs", "maxBytes"], ["idempotent", "waitForReady", "cancellable"]],
  response: [2, ["id"], [], []],
  message: [3, ["link"], [], []],
  send: [4, ["id", "link"], [], []],
  sent: [5, ["id"], [], []],
};
/** A kind's name by its number on the wire. */
const KINDS: (string | undefined)[] = [];
for (const [t, [kind]] of Object.entries(SHAPES)) KINDS[kind] = t;

const isU48 = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0 && v < U48;

/**
 * The compact header's bytes for `h` (kind, flags, then its numbers as
 * 48-bit integers: those it always has, then those its flags name), or null
 * when `h` has no compact form — another kind, a field the form has no room
 * for, a number it cannot hold: then the frame goes as JSON.
 */
function compactFields(h: Header): { kind: number; flags: number; values: number[] } | null {
  if (!Object.hasOwn(SHAPES, h.t)) return null;
  const shape = SHAPES[h.t]!;
  const [kind, always, optional, flagged] = shape;
  const values: number[] = [];
  let flags = 0;
  let fields = 1;
  for (const f of always) {
    if (!isU48(h[f])) return null;
    values.push(h[f]);
    fields++;
  }
  let bit = 1;
  for (const f of optional) {
    const v = h[f];
    if (v !== undefined) {
      if (!isU48(v)) return null;
      values.push(v);
      flags |= bit;
      fields++;
    }
    bit <<= 1;
  }
  for (const f of flagged) {
    const v = h[f];
    if (v !== undefined) {
      if (v !== true) return null;
      flags |= bit;
      fields++;
    }
    bit <<= 1;
  }
  for (const _ in h) fields--;
  return fields === 0 ? { kind, flags, values } : null;
}

function readCompact(b: Buffer, at: number, len: number): Header {
  const t = KINDS[b[at]!];
  if (t === undefined || len < 2) throw new ProtocolError(1, `agent frame header of kind ${b[at]} and ${len} bytes is not one this wire knows`);
  const [, always, optional, flagged] = SHAPES[t]!;
  const flags = b[at + 1]!;
  if (flags >> (optional.length + flagged.length) !== 0) throw new ProtocolError(1, `agent ${t} header has flags ${flags} it does not know`);
  const h: Header = { t };
  let p = at + 2;
  const end = at + len;
  const take = (f: string): void => {
    if (p + 6 > end) throw new ProtocolError(1, `agent ${t} header ends inside its ${f}`);
    h[f] = b.readUIntBE(p, 6);
    p += 6;
  };
  for (const f of always) take(f);
  optional.forEach((f, i) => flags & (1 << i) && take(f));
  flagged.forEach((f, i) => flags & (1 << (optional.length + i)) && (h[f] = true));
  if (p !== end) throw new ProtocolError(1, `agent ${t} header is ${len} bytes, ${end - p} more than it holds`);
  return h;
}

/**
 * Writes one frame to `sink`: one buffer for header and a small payload, or
 * the header's and the payload as it is. `compact`: the peer offered WIRE_VERSION.
 */
export function writeFrame(sink: FrameSink, header: Header, payload: Uint8Array = EMPTY, compact = false): void {
  const c = compact ? compactFields(header) : null;
  const json = c === null ? JSON.stringify(header) : "";
  const hl = c === null ? Buffer.byteLength(json) : 2 + 6 * c.values.length;
  const pl = payload.length;
  const inline = pl <= INLINE_PAYLOAD;
  const b = Buffer.allocUnsafe(8 + hl + (inline ? pl : 0));
  b.writeUInt32BE(hl, 0);
  b.writeUInt32BE(pl, 4);
  if (c === null) b.write(json, 8, "utf8");
  else {
    b[8] = c.kind;
    b[9] = c.flags;
    for (let i = 0; i < c.values.length; i++) b.writeUIntBE(c.values[i]!, 10 + 6 * i, 6);
  }
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

/** A request's options as its header carries them across the agent's socket. */
export function requestOptions(h: Header): LinkRequestOptions {
  const options: LinkRequestOptions = {};
  // No "never" (0) through the agent: a process may not hold the shared session's slots and credit for ever.
  if (typeof h.timeoutMs === "number" && h.timeoutMs > 0) options.timeoutMs = h.timeoutMs;
  if (typeof h.maxBytes === "number") options.maxBytes = h.maxBytes;
  if (h.idempotent === true) options.idempotent = true;
  if (h.waitForReady === true) options.waitForReady = true;
  return options;
}
