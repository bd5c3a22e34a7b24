import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from "node:crypto";
import { PUBLIC_KEY_SIZE, SERVER_ID_SIZE } from "./constants.ts";

/**
 * A new Ed25519 or X25519 private key: 32 random bytes (an RFC 8032 seed, an
 * RFC 7748 scalar), imported as a JWK (the runtime's fast raw-key path; the
 * public key is derived from `d`, so the `x` given is a placeholder).
 *
 * Not `generateKeyPairSync()`: on Node 20 the key-generation job it leaves
 * behind locks the new key when the GC finalizes it, and a GC that happens
 * while another call holds that lock — `export({ format: "jwk" })`, which
 * allocates under it — hangs the process for good (seen under load: a serving
 * process stopped answering anything, its main thread waiting on the lock in
 * `~KeyGenJob` inside `ExportJWK`; 300,000 generate-and-export rounds with
 * 1 MiB semi-spaces hang within seconds). An imported key has no such job.
 */
export function newPrivateKey(crv: "Ed25519" | "X25519"): KeyObject {
  return createPrivateKey({ key: { kty: "OKP", crv, d: randomBytes(32).toString("base64url"), x: "" }, format: "jwk" });
}

/** The raw 32-byte public key (Ed25519 or X25519) of a key object. */
export function rawPublicKey(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: "jwk" }).x!, "base64url");
}

/** A key object for a raw 32-byte Ed25519 public key. */
export function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== PUBLIC_KEY_SIZE) throw new RangeError(`Ed25519 public key must be ${PUBLIC_KEY_SIZE} bytes`);
  // As a JWK: the runtime's raw-key path, 8× faster here than decoding DER (13 against 108 µs).
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("base64url") }, format: "jwk" });
}

/** Key objects of recently seen raw keys: building one costs as much as half a verification. */
const keyObjects = new Map<string, KeyObject>();
const MAX_KEY_OBJECTS = 256;

function cachedKey(rawKey: Uint8Array): KeyObject {
  const hex = Buffer.from(rawKey.buffer, rawKey.byteOffset, rawKey.byteLength).toString("hex");
  let key = keyObjects.get(hex);
  if (!key) {
    key = publicKeyFromRaw(rawKey);
    if (keyObjects.size >= MAX_KEY_OBJECTS) keyObjects.delete(keyObjects.keys().next().value!);
    keyObjects.set(hex, key);
  }
  return key;
}

/** The field prime of edwards25519, 2^255 - 19. */
const P = (1n << 255n) - 19n;

/**
 * The y coordinates of the eight points of order dividing 8 (the torsion
 * subgroup: 0, 1, p - 1 and the two of order 8), as the canonical encodings
 * list them. A public key there verifies signatures nobody made (with R the
 * identity and S = 0, for instance), so it is never a key.
 */
const SMALL_ORDER_Y: ReadonlySet<bigint> = new Set(
  [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  ].map((hex) => yOf(Buffer.from(hex, "hex"))),
);

/** The y coordinate an encoding names: the low 255 bits, little-endian, reduced mod p (so y ≥ p spellings count too). */
function yOf(raw: Uint8Array): bigint {
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(i === 31 ? raw[i]! & 0x7f : raw[i]!);
  return y % P;
}

/** Whether a raw Ed25519 public key is a point of small order, in any spelling (sign bit either way, y ≥ p). */
export function isSmallOrderKey(rawKey: Uint8Array): boolean {
  return rawKey.length === PUBLIC_KEY_SIZE && SMALL_ORDER_Y.has(yOf(rawKey));
}

/** Verifies an Ed25519 signature; false (never a throw) for any malformed input or small-order key. */
export function verifySignature(message: Uint8Array, signature: Uint8Array, rawKey: Uint8Array): boolean {
  if (isSmallOrderKey(rawKey)) return false;
  try {
    return verify(null, message, cachedKey(rawKey), signature);
  } catch {
    return false;
  }
}

/** "SHA256:" and the unpadded base64 of the key's SHA-256, as OpenSSH prints fingerprints. */
export function keyFingerprint(rawKey: Uint8Array): string {
  return "SHA256:" + createHash("sha256").update(rawKey).digest("base64").replace(/=+$/, "");
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function uuidToBytes(uuid: string): Buffer {
  if (!UUID_RE.test(uuid)) throw new RangeError(`not a lower-case UUID: ${uuid}`);
  return Buffer.from(uuid.replace(/-/g, ""), "hex");
}

export function bytesToUuid(b: Uint8Array): string {
  if (b.length !== SERVER_ID_SIZE) throw new RangeError(`server id must be ${SERVER_ID_SIZE} bytes`);
  const h = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/** A client's Ed25519 key, proven to the server in the sealed handshake (protocol v2). */
export interface ClientKey {
  /** The raw 32-byte public key. */
  readonly publicKey: Buffer;
  /** `SHA256:…`, as the server's `ctx.clientKey` and `perilink key` show it. */
  readonly fingerprint: string;
  sign(message: Uint8Array): Buffer;
}

/** The client key of an Ed25519 private key. */
export function clientKeyOf(privateKey: KeyObject): ClientKey {
  const publicKey = rawPublicKey(createPublicKey(privateKey));
  return { publicKey, fingerprint: keyFingerprint(publicKey), sign: (m) => sign(null, m, privateKey) };
}

const FINGERPRINT_RE = /^SHA256:[A-Za-z0-9+/]{43}$/;

/** Whether `s` is a key fingerprint as `keyFingerprint()` writes it. */
export function isFingerprint(s: string): boolean {
  return FINGERPRINT_RE.test(s);
}
