import { ProtocolError, SignatureError } from "../errors.ts";
import { MAGIC, MAX_MAX_FRAME, MIN_MAX_FRAME, PUBLIC_KEY_SIZE, SERVER_ID_SIZE, SIGNATURE_SIZE, WireError } from "./constants.ts";
import {
  CLIENT_SIGNATURE_CONTEXT,
  SERVER_SIGNATURE_CONTEXT,
  X25519_KEY_SIZE,
  deriveSessionKeys,
  newEphemeral,
  sharedSecret,
  signedTranscript,
  transcriptHash,
  type Ephemeral,
  type SessionKeys,
} from "./key_exchange.ts";
import { verifySignature } from "./keys.ts";
import { CIPHER_BITS, LARGE_RECORD_PLAINTEXT, MAX_RECORD_PLAINTEXT, type CipherName } from "./record_layer.ts";

/**
 * The sealed handshake (protocol v2, docs/protocol.md §2): a signed
 * transcript in the manner of SIGMA and TLS 1.3, one round trip.
 *
 *   client                                        server
 *   ClientHello: version 2, ciphers offered,
 *     maxFrame, ephemeral X25519 key  ──────────▶
 *                                      ◀──────────  ServerHello: version, status, cipher
 *                                                   chosen, server id, identity key,
 *                                                   ephemeral key, limits, generation,
 *                                                   signature over both hellos
 *   keys = HKDF(X25519(e_c, e_s), SHA-256(ClientHello ‖ ServerHello))
 *   first sealed record: client key, signature over the transcript, then frames
 *
 * Everything either side said is under the server's signature (so no field
 * of either hello can be changed, and the cipher cannot be downgraded), the
 * keys are fresh for every session (forward secrecy), and the client proves
 * its own key inside the first sealed record (hidden from onlookers).
 */

export const SEALED_VERSION = 2;

/**
 * What a side of version 2 understands beyond the first release of it,
 * announced in its hello (§2.1, §2.2), so that peers of different releases
 * talk: a side never sends what the other did not announce.
 */
export enum Feature {
  /** DATA, WINDOW and streamed REQUEST/RESPONSE (§4.7). */
  Streams = 0x01,
  /** ADDRESSES (§5.4). */
  Addresses = 0x02,
  /** The side opens records of up to LARGE_RECORD_PLAINTEXT after the first (§2.5). */
  LargeRecords = 0x04,
}
/** Everything this release understands. */
export const OUR_FEATURES = Feature.Streams | Feature.Addresses | Feature.LargeRecords;

/** This side's feature bits: all of this release's, less large records where the target keeps records small (a device's memory). */
export function ourFeatures(largeRecords: boolean): number {
  return largeRecords ? OUR_FEATURES : OUR_FEATURES & ~Feature.LargeRecords;
}

/** The largest record plaintext for a direction whose receiver announced `features` (§2.5). */
export function recordPlaintextFor(features: number): number {
  return (features & Feature.LargeRecords) !== 0 ? LARGE_RECORD_PLAINTEXT : MAX_RECORD_PLAINTEXT;
}
/** magic, version, ciphers, reserved u16, maxFrame, reserved u32, ephemeral key. */
export const CLIENT_HELLO_V2_SIZE = 16 + X25519_KEY_SIZE;
/** magic, version, status, cipher, reserved, server id, identity key, ephemeral key, 5 × u32, signature. */
export const SERVER_HELLO_V2_SIZE = 8 + SERVER_ID_SIZE + PUBLIC_KEY_SIZE + X25519_KEY_SIZE + 20 + SIGNATURE_SIZE;
/** The signed part of the server hello: all but the signature. */
const SERVER_SIGNED_SIZE = SERVER_HELLO_V2_SIZE - SIGNATURE_SIZE;
/** The client's proof at the start of its first record: its Ed25519 key and a signature over the transcript. */
export const CLIENT_AUTH_SIZE = PUBLIC_KEY_SIZE + SIGNATURE_SIZE;

export interface ClientHelloV2 {
  version: number;
  /** CIPHER_BITS of the ciphers the client offers. */
  ciphers: number;
  maxFrame: number;
  ephemeral: Buffer;
  /** Feature bits (offset 12; 0 from a first-release client). */
  features: number;
}

export interface ServerHelloV2 {
  version: number;
  /** 0: accepted; else a WireError code, and the rest is zero (a refusal is not signed). */
  status: number;
  cipher: CipherName | null;
  serverId: Buffer;
  publicKey: Buffer;
  ephemeral: Buffer;
  maxFrame: number;
  maxChannels: number;
  maxInflight: number;
  generation: number;
  idleTimeoutMs: number;
  signature: Buffer;
  /** Feature bits (offset 7; 0 from a first-release server). */
  features: number;
}

/** What the server announces about itself in its hello. */
export interface ServerOffer {
  serverId: Uint8Array;
  publicKey: Uint8Array;
  maxFrame: number;
  maxChannels: number;
  maxInflight: number;
  generation: number;
  idleTimeoutMs: number;
  /** The ciphers the server provides, preferred first. */
  ciphers: readonly CipherName[];
  /** Signs with the server's Ed25519 identity key. */
  sign(message: Uint8Array): Uint8Array;
  /** Feature bits to announce (default: this release's, OUR_FEATURES). */
  features?: number;
}

/** A handshake both sides have finished: the keys for each direction, the cipher, and the transcript hash. */
export interface SealedKeys {
  readonly cipher: CipherName;
  readonly keys: SessionKeys;
  readonly transcript: Buffer;
}

export function cipherBits(ciphers: readonly CipherName[]): number {
  let bits = 0;
  for (const c of ciphers) bits |= CIPHER_BITS[c];
  return bits;
}

function cipherOfBit(bit: number): CipherName | null {
  for (const [name, b] of Object.entries(CIPHER_BITS) as [CipherName, number][]) if (b === bit) return name;
  return null;
}

// ── client hello ──────────────────────────────────────────────────────────

export function encodeClientHelloV2(hello: ClientHelloV2): Buffer {
  const b = Buffer.alloc(CLIENT_HELLO_V2_SIZE);
  b.writeUInt32BE(MAGIC, 0);
  b[4] = hello.version;
  b[5] = hello.ciphers;
  b.writeUInt32BE(hello.maxFrame, 8);
  b.writeUInt32BE(hello.features >>> 0, 12);
  b.set(hello.ephemeral.subarray(0, X25519_KEY_SIZE), 16);
  return b;
}

/** Decodes a whole client hello (CLIENT_HELLO_V2_SIZE bytes). A wrong magic or a bad field is a `ProtocolError`. */
export function decodeClientHelloV2(b: Buffer): ClientHelloV2 {
  if (b.length < CLIENT_HELLO_V2_SIZE) throw bad(`${b.length} of ${CLIENT_HELLO_V2_SIZE} bytes`);
  if (b.readUInt32BE(0) !== MAGIC) throw bad("bad magic (not a perilink client)");
  const hello: ClientHelloV2 = { version: b[4]!, ciphers: b[5]!, maxFrame: b.readUInt32BE(8), features: b.readUInt32BE(12), ephemeral: b.subarray(16, 16 + X25519_KEY_SIZE) };
  if (hello.maxFrame < MIN_MAX_FRAME || hello.maxFrame > MAX_MAX_FRAME) throw bad(`maxFrame ${hello.maxFrame} outside ${MIN_MAX_FRAME}..${MAX_MAX_FRAME}`);
  return hello;
}

function bad(why: string): ProtocolError {
  return new ProtocolError(WireError.ProtocolError, `Cannot decode client hello: ${why}`);
}

// ── server side ───────────────────────────────────────────────────────────

/** The server's answer to a whole v2 client hello: the signed hello to send and the session's keys, or a refusal. */
export type ServerAnswer = { ok: true; reply: Buffer; sealed: SealedKeys; peerMaxFrame: number; peerFeatures: number } | { ok: false; status: number; why: string; reply: Buffer };

/**
 * Answers a client hello. The cipher is the server's most preferred one the
 * client offered; none in common is a refusal (`VersionUnsupported`), as is
 * a version other than 2.
 */
export function answerClientHelloV2(clientHello: Buffer, offer: ServerOffer, ephemeralKey?: Ephemeral): ServerAnswer {
  const hello = decodeClientHelloV2(clientHello);
  if (hello.version !== SEALED_VERSION) {
    return { ok: false, status: WireError.VersionUnsupported, why: `client speaks version ${hello.version}`, reply: encodeServerRefusalV2(WireError.VersionUnsupported) };
  }
  const cipher = offer.ciphers.find((c) => (hello.ciphers & CIPHER_BITS[c]) !== 0);
  if (cipher === undefined) {
    return { ok: false, status: WireError.VersionUnsupported, why: `no cipher in common (client offers bits ${hello.ciphers})`, reply: encodeServerRefusalV2(WireError.VersionUnsupported) };
  }
  // Made only for a hello that is answered: a refused one costs no key generation.
  const ephemeral = ephemeralKey ?? newEphemeral();
  const secret = sharedSecret(ephemeral, hello.ephemeral);
  const reply = Buffer.alloc(SERVER_HELLO_V2_SIZE);
  reply.writeUInt32BE(MAGIC, 0);
  reply[4] = SEALED_VERSION;
  reply[5] = 0;
  reply[6] = CIPHER_BITS[cipher];
  reply[7] = offer.features ?? OUR_FEATURES;
  let o = 8;
  reply.set(offer.serverId, o);
  o += SERVER_ID_SIZE;
  reply.set(offer.publicKey, o);
  o += PUBLIC_KEY_SIZE;
  reply.set(ephemeral.publicKey, o);
  o += X25519_KEY_SIZE;
  reply.writeUInt32BE(offer.maxFrame, o);
  reply.writeUInt32BE(offer.maxChannels, o + 4);
  reply.writeUInt32BE(offer.maxInflight, o + 8);
  reply.writeUInt32BE(offer.generation, o + 12);
  reply.writeUInt32BE(offer.idleTimeoutMs, o + 16);
  const clientPart = clientHello.subarray(0, CLIENT_HELLO_V2_SIZE);
  const signed = signedTranscript(SERVER_SIGNATURE_CONTEXT, transcriptHash(clientPart, reply.subarray(0, SERVER_SIGNED_SIZE)));
  reply.set(offer.sign(signed), SERVER_SIGNED_SIZE);
  const transcript = transcriptHash(clientPart, reply);
  return { ok: true, reply, sealed: { cipher, keys: deriveSessionKeys(secret, transcript), transcript }, peerMaxFrame: hello.maxFrame, peerFeatures: hello.features };
}

/** A refusal in the v2 layout: status set, every other field zero (unsigned: a peer may forge one, as it may reset the connection). */
export function encodeServerRefusalV2(status: number): Buffer {
  const b = Buffer.alloc(SERVER_HELLO_V2_SIZE);
  b.writeUInt32BE(MAGIC, 0);
  b[4] = SEALED_VERSION;
  b[5] = status;
  return b;
}

/**
 * The client's proof at the start of its first record: returns the client's
 * raw Ed25519 key, or throws a `ProtocolError` when the signature over this
 * session's transcript does not verify.
 */
export function verifyClientAuth(auth: Uint8Array, transcript: Uint8Array): Buffer {
  if (auth.length < CLIENT_AUTH_SIZE) throw new ProtocolError(WireError.ProtocolError, `Cannot accept the client's proof: ${auth.length} of ${CLIENT_AUTH_SIZE} bytes`);
  const key = Buffer.from(auth.subarray(0, PUBLIC_KEY_SIZE));
  const signature = auth.subarray(PUBLIC_KEY_SIZE, CLIENT_AUTH_SIZE);
  if (!verifySignature(signedTranscript(CLIENT_SIGNATURE_CONTEXT, transcript), signature, key)) {
    throw new ProtocolError(WireError.ProtocolError, "Cannot accept the client's proof: its signature over this session's transcript does not verify");
  }
  return key;
}

// ── client side ───────────────────────────────────────────────────────────

/** A client's half-done handshake: its hello is sent, the server's is awaited. */
export class ClientHandshakeV2 {
  readonly hello: Buffer;
  #ephemeral: Ephemeral;

  constructor(options: { ciphers: readonly CipherName[]; maxFrame: number; features?: number }, ephemeral: Ephemeral = newEphemeral()) {
    this.#ephemeral = ephemeral;
    this.hello = encodeClientHelloV2({ version: SEALED_VERSION, ciphers: cipherBits(options.ciphers), maxFrame: options.maxFrame, features: options.features ?? OUR_FEATURES, ephemeral: ephemeral.publicKey });
  }

  /**
   * Checks the server's whole hello: the layout, the status, that the cipher
   * is one the client offered, and the signature of the key the hello names
   * over both hellos. Whether that key is the one the client expects (a pin)
   * is the caller's check. Throws a `ProtocolError`; a refusal is returned
   * with its status for the caller to report.
   */
  finish(serverHello: Buffer): { hello: ServerHelloV2; sealed: SealedKeys | null } {
    const hello = decodeServerHelloV2(serverHello);
    if (hello.status !== 0) return { hello, sealed: null };
    if (hello.version !== SEALED_VERSION) throw new ProtocolError(WireError.VersionUnsupported, `Cannot open a sealed session: the server answered version ${hello.version}`);
    if (hello.cipher === null || (this.hello[5]! & CIPHER_BITS[hello.cipher]) === 0) {
      throw new ProtocolError(WireError.ProtocolError, "Cannot open a sealed session: the server chose a cipher the client did not offer");
    }
    const signed = signedTranscript(SERVER_SIGNATURE_CONTEXT, transcriptHash(this.hello, serverHello.subarray(0, SERVER_SIGNED_SIZE)));
    if (!verifySignature(signed, hello.signature, hello.publicKey)) {
      throw new SignatureError("Cannot open a sealed session: the server's signature over the handshake does not verify (changed on the way, or not the server's key)");
    }
    const transcript = transcriptHash(this.hello, serverHello.subarray(0, SERVER_HELLO_V2_SIZE));
    const secret = sharedSecret(this.#ephemeral, hello.ephemeral);
    return { hello, sealed: { cipher: hello.cipher, keys: deriveSessionKeys(secret, transcript), transcript } };
  }
}

/** The client's proof for the start of its first record: its key and its signature over the transcript. */
export function clientAuth(publicKey: Uint8Array, sign: (message: Uint8Array) => Uint8Array, transcript: Uint8Array): Buffer {
  const out = Buffer.alloc(CLIENT_AUTH_SIZE);
  out.set(publicKey.subarray(0, PUBLIC_KEY_SIZE), 0);
  out.set(sign(signedTranscript(CLIENT_SIGNATURE_CONTEXT, transcript)), PUBLIC_KEY_SIZE);
  return out;
}

export function decodeServerHelloV2(b: Buffer): ServerHelloV2 {
  if (b.length < SERVER_HELLO_V2_SIZE) throw new ProtocolError(WireError.ProtocolError, `Cannot decode server hello: ${b.length} of ${SERVER_HELLO_V2_SIZE} bytes`);
  if (b.readUInt32BE(0) !== MAGIC) throw new ProtocolError(WireError.ProtocolError, "Cannot decode server hello: bad magic (not a perilink server)");
  let o = 8;
  const serverId = b.subarray(o, (o += SERVER_ID_SIZE));
  const publicKey = b.subarray(o, (o += PUBLIC_KEY_SIZE));
  const ephemeral = b.subarray(o, (o += X25519_KEY_SIZE));
  const hello: ServerHelloV2 = {
    version: b[4]!,
    status: b[5]!,
    cipher: cipherOfBit(b[6]!),
    serverId,
    publicKey,
    ephemeral,
    maxFrame: b.readUInt32BE(o),
    maxChannels: b.readUInt32BE(o + 4),
    maxInflight: b.readUInt32BE(o + 8),
    generation: b.readUInt32BE(o + 12),
    idleTimeoutMs: b.readUInt32BE(o + 16),
    signature: b.subarray(SERVER_SIGNED_SIZE, SERVER_HELLO_V2_SIZE),
    features: b[7]!,
  };
  if (hello.status === 0 && (hello.maxFrame < MIN_MAX_FRAME || hello.maxFrame > MAX_MAX_FRAME)) {
    throw new ProtocolError(WireError.ProtocolError, `Cannot decode server hello: maxFrame ${hello.maxFrame} outside ${MIN_MAX_FRAME}..${MAX_MAX_FRAME}`);
  }
  return hello;
}
