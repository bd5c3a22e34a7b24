import { createPrivateKey, type KeyObject } from "node:crypto";
import { promises as fs, readFileSync } from "node:fs";
import path from "node:path";
import { IdentityError } from "../errors.ts";
import { clientKeyOf, newPrivateKey, type ClientKey } from "../protocol/keys.ts";
import { createFileAtomic } from "./atomic_file.ts";
import { ensurePrivateDir } from "./state_dir.ts";

/** The file, in a state directory, of the client key that `perilink call` and `createClient()` prove. */
export const CLIENT_KEY_FILE = "client-key.json";

interface ClientKeyFile {
  version: 1;
  privateKey: string;
}

/**
 * The client key of `stateDir`, made on first use (directory 0700, file 0600,
 * created atomically and never replaced: two processes that make it at once
 * both end up with the one that won). A file that exists but cannot be read or
 * parsed is an `IdentityError`: a client never silently takes a new key, since
 * the devices that trust the old one would refuse it.
 */
export async function loadOrCreateClientKey(stateDir: string): Promise<ClientKey> {
  await ensurePrivateDir(stateDir);
  const file = path.join(stateDir, CLIENT_KEY_FILE);
  for (let tries = 0; ; tries++) {
    let text: string;
    try {
      text = await fs.readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || tries > 0) throw unreadable(file, err);
      const privateKey = newPrivateKey("Ed25519");
      const data: ClientKeyFile = { version: 1, privateKey: privateKey.export({ format: "der", type: "pkcs8" }).toString("base64") };
      if (await createFileAtomic(file, JSON.stringify(data, null, 2) + "\n", 0o600)) return clientKeyOf(privateKey);
      continue; // another process made it first: read theirs
    }
    return clientKeyOf(parseClientKey(file, text));
  }
}

/**
 * The fingerprint of `stateDir`'s client key, or null when there is none yet
 * (read synchronously: the server checks it when its trusted keys change).
 */
export function readClientKeyFingerprint(stateDir: string): string | null {
  const file = path.join(stateDir, CLIENT_KEY_FILE);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw unreadable(file, err);
  }
  return clientKeyOf(parseClientKey(file, text)).fingerprint;
}

const unreadable = (file: string, err: unknown): IdentityError =>
  new IdentityError(`Cannot read client key ${file}: ${(err as Error).message}; fix its permissions`, { cause: err });

function parseClientKey(file: string, text: string): KeyObject {
  return parseKeyFile(text, (why, cause) =>
    new IdentityError(`Cannot load client key ${file}: ${why}. Restore it, or delete it to make a new key (which devices must then trust)`, { cause }),
  ).key;
}

/**
 * A state directory's key file (`{"version":1,"privateKey":"<PKCS#8 DER, base64>",…}`):
 * its Ed25519 key and its other fields; anything else is `fail(why)`.
 */
export function parseKeyFile(text: string, fail: (why: string, cause?: unknown) => Error, checkFields?: (data: Record<string, unknown>) => void): { key: KeyObject; data: Record<string, unknown> } {
  let data: { version?: unknown; privateKey?: unknown };
  try {
    data = JSON.parse(text) as typeof data;
  } catch (err) {
    throw fail("not valid JSON", err);
  }
  if (data === null || typeof data !== "object" || data.version !== 1) throw fail("unknown format version");
  checkFields?.(data);
  if (typeof data.privateKey !== "string") throw fail("privateKey is missing");
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(data.privateKey, "base64"), format: "der", type: "pkcs8" });
  } catch (err) {
    throw fail("privateKey is not a PKCS#8 key", err);
  }
  if (key.asymmetricKeyType !== "ed25519") throw fail(`privateKey is ${key.asymmetricKeyType}, not ed25519`);
  return { key, data: data as Record<string, unknown> };
}
