import { createHash, createPublicKey, diffieHellman, hkdfSync, type KeyObject } from "node:crypto";
import { ProtocolError } from "../errors.ts";
import { WireError } from "./constants.ts";
import { newPrivateKey, rawPublicKey } from "./keys.ts";

/**
 * The primitives of the sealed handshake (protocol v2, docs/protocol.md §2),
 * all from node:crypto: ephemeral X25519, SHA-256 over the transcript, and
 * HKDF-SHA256 for one key per direction. Nothing here is a hand-written
 * primitive; this file only fixes the encodings and the labels.
 */

/** An X25519 public key on the wire: 32 raw bytes (RFC 7748). */
export const X25519_KEY_SIZE = 32;
/** SHA-256 output: the transcript hash. */
export const TRANSCRIPT_HASH_SIZE = 32;
/** An AEAD key. */
export const SESSION_KEY_SIZE = 32;

/** HKDF `info` for the two session keys, and the labels of the two signed messages. */
const KEYS_INFO = Buffer.from("perilink/2 session keys", "ascii");
export const SERVER_SIGNATURE_CONTEXT = "perilink/tcp/2 server";
export const CLIENT_SIGNATURE_CONTEXT = "perilink/tcp/2 client";

/** An ephemeral X25519 key pair: used for one handshake, then dropped. */
export interface Ephemeral {
  readonly privateKey: KeyObject;
  /** The raw 32-byte public key, as it goes on the wire. */
  readonly publicKey: Buffer;
}

export function newEphemeral(): Ephemeral {
  const privateKey = newPrivateKey("X25519"); // not generateKeyPairSync: see newPrivateKey
  return { privateKey, publicKey: rawPublicKey(createPublicKey(privateKey)) };
}

/**
 * The X25519 shared secret with a peer's raw public key. A key that is not a
 * valid point, or a low-order one that gives the all-zero secret (RFC 7748
 * §6.1), is a protocol error: the session ends.
 */
export function sharedSecret(own: Ephemeral, peerPublicKey: Uint8Array): Buffer {
  if (peerPublicKey.length !== X25519_KEY_SIZE) {
    throw new ProtocolError(WireError.ProtocolError, `Cannot agree on a key: the peer's key has ${peerPublicKey.length} bytes, not ${X25519_KEY_SIZE}`);
  }
  let secret: Buffer;
  try {
    const peer = createPublicKey({ key: { kty: "OKP", crv: "X25519", x: Buffer.from(peerPublicKey).toString("base64url") }, format: "jwk" });
    secret = diffieHellman({ privateKey: own.privateKey, publicKey: peer });
  } catch (err) {
    throw new ProtocolError(WireError.ProtocolError, `Cannot agree on a key: the peer's key is not usable (${(err as Error).message})`);
  }
  if (secret.every((b) => b === 0)) throw new ProtocolError(WireError.ProtocolError, "Cannot agree on a key: the peer sent a low-order key");
  return secret;
}

/** SHA-256 over the hellos as they crossed the wire, in order. */
export function transcriptHash(...messages: Uint8Array[]): Buffer {
  const h = createHash("sha256");
  for (const m of messages) h.update(m);
  return h.digest();
}

/** The two session keys: client to server, and server to client. */
export interface SessionKeys {
  readonly clientToServer: Buffer;
  readonly serverToClient: Buffer;
}

/** HKDF-SHA256 with the shared secret as input key material and the transcript hash as salt. */
export function deriveSessionKeys(secret: Uint8Array, transcript: Uint8Array): SessionKeys {
  const okm = Buffer.from(hkdfSync("sha256", secret, transcript, KEYS_INFO, 2 * SESSION_KEY_SIZE));
  return { clientToServer: okm.subarray(0, SESSION_KEY_SIZE), serverToClient: okm.subarray(SESSION_KEY_SIZE) };
}

/** What a side signs with its Ed25519 identity key: a context label and the transcript hash. */
export function signedTranscript(context: string, transcript: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(context, "ascii"), transcript]);
}
