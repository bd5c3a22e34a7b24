import { createPublicKey, randomUUID, sign, type KeyObject } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { IdentityError } from "../errors.ts";
import { isUuid, newPrivateKey, rawPublicKey, uuidToBytes } from "../protocol/keys.ts";
import { writeFileAtomic } from "../runtime/atomic_file.ts";
import { parseKeyFile } from "../runtime/client_key_file.ts";
import { ensurePrivateDir } from "../runtime/state_dir.ts";

/** The file, inside the state directory, that holds the server's identity. */
export const IDENTITY_FILE = "identity.json";

/** The server's stable identity (S1): a UUID and an Ed25519 key pair. */
export class Identity {
  readonly serverId: string;
  readonly serverIdBytes: Buffer;
  readonly publicKey: Buffer;
  #privateKey: KeyObject;

  constructor(serverId: string, privateKey: KeyObject) {
    this.serverId = serverId;
    this.serverIdBytes = uuidToBytes(serverId);
    this.#privateKey = privateKey;
    this.publicKey = rawPublicKey(createPublicKey(privateKey));
  }

  sign(message: Uint8Array): Buffer {
    return sign(null, message, this.#privateKey);
  }
}

interface IdentityFile {
  version: 1;
  serverId: string;
  privateKey: string;
}

/**
 * Loads the identity from `stateDir`, creating it (directory 0700, file 0600,
 * written atomically) on first start. A file that exists but cannot be read or
 * parsed is an `IdentityError`: a server never silently takes a new identity.
 */
export async function loadOrCreateIdentity(stateDir: string): Promise<Identity> {
  await ensurePrivateDir(stateDir);
  const file = path.join(stateDir, IDENTITY_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new IdentityError(`Cannot read identity ${file}: ${(err as Error).message}; fix its permissions`, { cause: err });
    }
    return createIdentity(file);
  }
  return parseIdentity(file, text);
}

async function createIdentity(file: string): Promise<Identity> {
  const privateKey = newPrivateKey("Ed25519");
  const data: IdentityFile = {
    version: 1,
    serverId: randomUUID(),
    privateKey: privateKey.export({ format: "der", type: "pkcs8" }).toString("base64"),
  };
  await writeFileAtomic(file, JSON.stringify(data, null, 2) + "\n", 0o600);
  return new Identity(data.serverId, privateKey);
}

function parseIdentity(file: string, text: string): Identity {
  const fail = (why: string, cause?: unknown): IdentityError =>
    new IdentityError(
      `Cannot load identity ${file}: ${why}. Restore it from a backup, or delete it to make this device a new server with a new identifier`,
      { cause },
    );
  const { key, data } = parseKeyFile(text, fail, (d) => {
    if (typeof d.serverId !== "string" || !isUuid(d.serverId)) throw fail("serverId is not a UUID");
  });
  return new Identity(data.serverId as string, key);
}
