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
  UDP_SIGNATURE_CONTEXT,
} from "./constants.ts";

export interface ProbeResponse {
  serverId: Uint8Array;
  publicKey: Uint8Array;
  signature: Uint8Array;
  generation: number;
}

/** A probe request: magic, version, type, reserved, nonce, zero padding to 128 bytes. */
export function encodeProbeRequest(nonce: Uint8Array): Buffer {
  const b = Buffer.alloc(PROBE_REQUEST_SIZE);
  b.writeUInt32BE(MAGIC, 0);
  b[4] = PROTOCOL_VERSION;
  b[5] = PROBE_TYPE_REQUEST;
  b.set(nonce.subarray(0, NONCE_SIZE), 8);
  return b;
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
  return { serverId, publicKey, signature, generation: b.readUInt32BE(o) };
}

/** The bytes the server signs in a probe response: context ‖ nonce ‖ serverId ‖ generation. */
export function udpSignedMessage(nonce: Uint8Array, serverId: Uint8Array, generation: number): Buffer {
  const gen = Buffer.alloc(4);
  gen.writeUInt32BE(generation >>> 0, 0);
  return Buffer.concat([Buffer.from(UDP_SIGNATURE_CONTEXT, "ascii"), nonce, serverId, gen]);
}
