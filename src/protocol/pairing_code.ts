import { createHmac, hkdfSync, randomInt, timingSafeEqual } from "node:crypto";

/**
 * Pairing a host with a device that has no keyboard (docs/security.md §Pairing).
 * The device shows a one-time code; the host proves it knows the code inside
 * a sealed session, bound to that session's transcript hash, and the device
 * proves it back. The code has 80 bits from the CSPRNG, so an active
 * attacker who gets the host to talk to it instead of the device learns a
 * proof it can only check against the code by trying 2^80 codes, not within
 * the code's few minutes; a proof is worth nothing on another session
 * (another transcript), and the device takes each code once.
 */

/** The reserved app a host opens to pair (not subject to the device's trusted keys). */
export const PAIR_APP = "perilink.pair";

/** Crockford's base32: no I, L, O, U, so a code read off a screen cannot be mistyped into another. */
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_CHARS = 16; // 16 × 5 = 80 bits

/** A new code, as people read it: `XXXX-XXXX-XXXX-XXXX`. */
export function newPairingCode(): string {
  let s = "";
  for (let i = 0; i < CODE_CHARS; i++) s += (i > 0 && i % 4 === 0 ? "-" : "") + ALPHABET[randomInt(32)];
  return s;
}

/** A code as typed (any case, dashes or spaces, O for 0, I or L for 1) → its canonical form, or null. */
export function normalizePairingCode(typed: string): string | null {
  const s = typed.toUpperCase().replace(/[\s-]/g, "").replace(/O/g, "0").replace(/[IL]/g, "1");
  if (s.length !== CODE_CHARS || [...s].some((c) => !ALPHABET.includes(c))) return null;
  return s;
}

/**
 * The proof that `role` knows `code` in the session with this transcript:
 * HMAC-SHA256 under HKDF-SHA256(code, salt = transcript hash), over the role
 * and the fingerprint of the key the role is proved for.
 */
export function pairingProof(code: string, transcript: Uint8Array, role: "host" | "device", fingerprint: string): Buffer {
  const key = Buffer.from(hkdfSync("sha256", code, transcript, "perilink/2 pairing", 32));
  return createHmac("sha256", key).update(`perilink/2 pairing ${role}\n${fingerprint}`).digest();
}

/** Whether `proof` (any length) is `expected`, in constant time. */
export function proofMatches(proof: Uint8Array, expected: Buffer): boolean {
  return proof.length === expected.length && timingSafeEqual(proof, expected);
}
