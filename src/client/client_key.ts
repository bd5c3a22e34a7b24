import { createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { keyFingerprint, rawPublicKey } from "../protocol/keys.ts";

/** A client's Ed25519 key, proven to the server in the sealed handshake (protocol v2). */
export interface ClientKey {
  /** The raw 32-byte public key. */
  readonly publicKey: Buffer;
  /** `SHA256:…`, as the server's `ctx.clientKey` and `perilink key` show it. */
  readonly fingerprint: string;
  sign(message: Uint8Array): Buffer;
}

export function clientKeyOf(privateKey: KeyObject): ClientKey {
  const publicKey = rawPublicKey(createPublicKey(privateKey));
  return { publicKey, fingerprint: keyFingerprint(publicKey), sign: (m) => sign(null, m, privateKey) };
}

let processKey: ClientKey | null = null;

/**
 * The key of a session opened without one: made on first use and kept for
 * this process only, so a server sees a new key each time the program runs.
 */
export function processClientKey(): ClientKey {
  return (processKey ??= clientKeyOf(generateKeyPairSync("ed25519").privateKey));
}
