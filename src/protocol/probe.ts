import {
  MAGIC,
  NONCE_SIZE,
  PROBE_REQUEST_SIZE,
  PROBE_RESPONSE_SIZE,
  PROBE_TYPE_REQUEST,
  PROBE_TYPE_RESPONSE,
  PROTOCOL_VERSION,
  PUBLIC_KEY_SIZE,
  SERVER_ID_SIZE,
  SIGNATURE_SIZE,
  UDP_BOUND_SIGNATURE_CONTEXT,
  UDP_SIGNATURE_CONTEXT,
  PROBE_FLAG_BOUND,
} from "./constants.ts";
import { ipv6Groups, stripZone } from "../address.ts";

export interface ProbeResponse {
  serverId: Uint8Array;
  publicKey: Uint8Array;
  signature: Uint8Array;
  generation: number;
  /** The signature covers the address and port the request was received on (§7.7). */
  bound?: boolean;
}

/** A probe request: magic, version, type, flags, reserved, nonce, zero padding to 128 bytes. `bound` asks for an answer bound to the address (§7.7). */
export function encodeProbeRequest(nonce: Uint8Array, bound = false): Buffer {
  const b = Buffer.alloc(PROBE_REQUEST_SIZE);
  b.writeUInt32BE(MAGIC, 0);
  b[4] = PROTOCOL_VERSION;
  b[5] = PROBE_TYPE_REQUEST;
  if (bound) b[6] = PROBE_FLAG_BOUND;
  b.set(nonce.subarray(0, NONCE_SIZE), 8);
  return b;
}

/** Whether a (valid) probe request asks for an answer bound to the address it was sent to. */
export function wantsBound(request: Buffer): boolean {
  return ((request[6] ?? 0) & PROBE_FLAG_BOUND) !== 0;
}

/**
 * The nonce of a valid probe request, or null for anything else. A datagram
 * shorter than `PROBE_REQUEST_SIZE` is not valid: the answer (124 bytes) must
 * never be larger than the question.
 */
export function decodeProbeRequest(b: Buffer): Buffer | null {
  if (b.length < PROBE_REQUEST_SIZE) return null;
  if (b.readUInt32BE(0) !== MAGIC || b[4] !== PROTOCOL_VERSION || b[5] !== PROBE_TYPE_REQUEST) return null;
  return b.subarray(8, 8 + NONCE_SIZE);
}

export function encodeProbeResponse(r: ProbeResponse): Buffer {
  const b = Buffer.alloc(PROBE_RESPONSE_SIZE);
  b.writeUInt32BE(MAGIC, 0);
  b[4] = PROTOCOL_VERSION;
  b[5] = PROBE_TYPE_RESPONSE;
  if (r.bound) b[6] = PROBE_FLAG_BOUND;
  let o = 8;
  b.set(r.serverId, o);
  o += SERVER_ID_SIZE;
  b.set(r.publicKey, o);
  o += PUBLIC_KEY_SIZE;
  b.set(r.signature, o);
  o += SIGNATURE_SIZE;
  b.writeUInt32BE(r.generation >>> 0, o);
  return b;
}

/** The fields of a probe response, or null when the datagram is not one. */
export function decodeProbeResponse(b: Buffer): ProbeResponse | null {
  if (b.length !== PROBE_RESPONSE_SIZE) return null;
  if (b.readUInt32BE(0) !== MAGIC || b[4] !== PROTOCOL_VERSION || b[5] !== PROBE_TYPE_RESPONSE) return null;
  let o = 8;
  const serverId = b.subarray(o, (o += SERVER_ID_SIZE));
  const publicKey = b.subarray(o, (o += PUBLIC_KEY_SIZE));
  const signature = b.subarray(o, (o += SIGNATURE_SIZE));
  return { serverId, publicKey, signature, generation: b.readUInt32BE(o), bound: ((b[6] ?? 0) & PROBE_FLAG_BOUND) !== 0 };
}

/** The bytes the server signs in a probe response: context ‖ nonce ‖ serverId ‖ generation. */
export function udpSignedMessage(nonce: Uint8Array, serverId: Uint8Array, generation: number): Buffer {
  const gen = Buffer.alloc(4);
  gen.writeUInt32BE(generation >>> 0, 0);
  return Buffer.concat([Buffer.from(UDP_SIGNATURE_CONTEXT, "ascii"), nonce, serverId, gen]);
}

/**
 * The bytes a server signs in an answer bound to where it was received
 * (§7.7): context ‖ nonce ‖ serverId ‖ generation ‖ address (16 bytes; IPv4
 * as IPv4-mapped IPv6, no zone) ‖ port. A relay elsewhere cannot pass it
 * off as its own: the client checks it against the address it probed.
 * Null when `address` is not a numeric address.
 */
export function udpBoundMessage(nonce: Uint8Array, serverId: Uint8Array, generation: number, address: string, port: number): Buffer | null {
  const where = addressBytes(address);
  if (where === null) return null;
  const tail = Buffer.alloc(6);
  tail.writeUInt32BE(generation >>> 0, 0);
  tail.writeUInt16BE(port & 0xffff, 4);
  return Buffer.concat([Buffer.from(UDP_BOUND_SIGNATURE_CONTEXT, "ascii"), nonce, serverId, tail.subarray(0, 4), where, tail.subarray(4)]);
}

function addressBytes(address: string): Buffer | null {
  const bare = stripZone(address);
  const quad = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(bare);
  const groups = quad ? [0, 0, 0, 0, 0, 0xffff, (Number(quad[1]) << 8) | Number(quad[2]), (Number(quad[3]) << 8) | Number(quad[4])] : ipv6Groups(bare);
  if (groups === null || (quad && quad.slice(1).some((x) => Number(x) > 255))) return null;
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(g, 2 * i));
  return b;
}
