/**
 * NetBIOS Name Service messages (RFC 1001/1002), only what a name query
 * needs: the encoded name, a broadcast NB query, and the positive answer.
 * `decodeNbAnswer` is total: any input gives a result or null, never a throw.
 */
import { MAX_ADDRESSES_PER_NAME } from "./name_types.ts";

/** NetBIOS suffix of the file/print server service (`<20>`), which every samba host registers for its names. */
export const NB_SERVER_SUFFIX = 0x20;
const NB = 0x0020;
const IN = 0x0001;
/** Flags of a broadcast query: opcode 0, RD, B. */
const QUERY_FLAGS = 0x0110;

/** Whether `name` can be a NetBIOS name: 1–15 characters of the allowed set, no dot. */
export function isNetbiosName(name: string): boolean {
  return /^[A-Za-z0-9!@#$%^&()\-'{}~_]{1,15}$/.test(name);
}

/** The first-level encoding: 15 bytes upper-cased and space-padded, the suffix, each half-byte as 'A'+n. */
export function encodeNetbiosName(name: string, suffix = NB_SERVER_SUFFIX): Uint8Array {
  const raw = new Uint8Array(16).fill(0x20);
  const up = name.toUpperCase();
  for (let i = 0; i < up.length && i < 15; i++) raw[i] = up.charCodeAt(i) & 0xff;
  raw[15] = suffix;
  const out = new Uint8Array(34);
  out[0] = 32;
  for (let i = 0; i < 16; i++) {
    out[1 + i * 2] = 0x41 + (raw[i]! >> 4);
    out[2 + i * 2] = 0x41 + (raw[i]! & 0x0f);
  }
  out[33] = 0; // no scope
  return out;
}

/** A broadcast NB query for `name`. */
export function encodeNbQuery(id: number, name: string, suffix = NB_SERVER_SUFFIX): Uint8Array {
  const q = encodeNetbiosName(name, suffix);
  const out = new Uint8Array(12 + q.length + 4);
  const v = new DataView(out.buffer);
  v.setUint16(0, id);
  v.setUint16(2, QUERY_FLAGS);
  v.setUint16(4, 1); // QDCOUNT
  out.set(q, 12);
  v.setUint16(12 + q.length, NB);
  v.setUint16(14 + q.length, IN);
  return out;
}

export interface NbAnswer {
  ttl: number;
  /** IPv4 addresses, in the order given. */
  addresses: string[];
}

/**
 * The positive answer to our query (`id`, `name`), or null when the message
 * is anything else: too short, a request, another id, an error code, no
 * answer, another name, not NB/IN, a length that overruns the message.
 */
export function decodeNbAnswer(buf: Uint8Array, id: number, name: string, suffix = NB_SERVER_SUFFIX): NbAnswer | null {
  if (buf.length < 12) return null;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (v.getUint16(0) !== id) return null;
  const flags = v.getUint16(2);
  if ((flags & 0x8000) === 0 || ((flags >> 11) & 0x0f) !== 0 || (flags & 0x000f) !== 0) return null; // response, opcode query, rcode 0
  if (v.getUint16(6) < 1) return null; // ANCOUNT
  let off = 12;
  for (let q = v.getUint16(4); q > 0; q--) {
    const end = skipName(buf, off);
    if (end < 0 || end + 4 > buf.length) return null;
    off = end + 4;
  }
  const want = encodeNetbiosName(name, suffix);
  if (off < buf.length && (buf[off]! & 0xc0) === 0xc0) {
    if (off + 2 > buf.length) return null;
    const ptr = ((buf[off]! & 0x3f) << 8) | buf[off + 1]!;
    if (!sameName(buf, ptr, want)) return null;
    off += 2;
  } else {
    if (!sameName(buf, off, want)) return null;
    const end = skipName(buf, off);
    if (end < 0) return null;
    off = end;
  }
  if (off + 10 > buf.length) return null;
  if (v.getUint16(off) !== NB || v.getUint16(off + 2) !== IN) return null;
  const ttl = v.getUint32(off + 4);
  const rdlength = v.getUint16(off + 8);
  off += 10;
  if (rdlength % 6 !== 0 || off + rdlength > buf.length) return null;
  // Linear, and at most MAX_ADDRESSES_PER_NAME: a 64 KiB answer lists ~10,900 entries.
  const seen = new Set<string>();
  for (let p = off; p < off + rdlength && seen.size < MAX_ADDRESSES_PER_NAME; p += 6) {
    const a = `${buf[p + 2]}.${buf[p + 3]}.${buf[p + 4]}.${buf[p + 5]}`;
    if (a !== "0.0.0.0") seen.add(a);
  }
  return seen.size > 0 ? { ttl: ttl > 0x7fffffff ? 0 : ttl, addresses: [...seen] } : null;
}

/** The offset after the (uncompressed) name at `off`, or -1 when it overruns. */
function skipName(buf: Uint8Array, off: number): number {
  for (let hops = 0; hops < 64; hops++) {
    if (off >= buf.length) return -1;
    const len = buf[off]!;
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) return off + 2 <= buf.length ? off + 2 : -1;
    if ((len & 0xc0) !== 0) return -1;
    off += 1 + len;
  }
  return -1;
}

/** Whether the encoded name (first label, case-insensitive) at `off` is `want`. */
function sameName(buf: Uint8Array, off: number, want: Uint8Array): boolean {
  if (off + want.length > buf.length) return false;
  for (let i = 0; i < 33; i++) {
    const a = buf[off + i]!;
    const b = want[i]!;
    if (a !== b && (a | 0x20) !== (b | 0x20)) return false;
  }
  return true;
}
