import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import type { Logger } from "../logger.ts";
import { keyFingerprint } from "../protocol/keys.ts";
import { normalizePairingCode, pairingProof, proofMatches } from "../protocol/pairing_code.ts";
import { writeFileAtomic } from "../runtime/atomic_file.ts";
import type { Identity } from "./identity.ts";
import { addTrust } from "./trusted_keys.ts";

/** The waiting code, in the state directory (`perilink pair` on the device writes it). */
export const PAIRING_FILE = "pairing.json";
/** One byte per attempt at the waiting code, appended by whichever process took it. */
export const PAIRING_ATTEMPTS_FILE = "pairing.attempts";
export const PAIRING_MAX_ATTEMPTS = 5;
export const PAIRING_DEFAULT_TTL_MS = 5 * 60_000;

/** What `perilink pair` on the device leaves for the server. */
export interface PairingOffer {
  version: 1;
  code: string;
  /** The apps the paired host is trusted for; null: every app. */
  apps: string[] | null;
  /** Wall-clock ms. */
  expiresAt: number;
}

/** Writes a new offer (replacing one that waits) with its attempts at zero. */
export async function offerPairing(stateDir: string, offer: PairingOffer): Promise<void> {
  await fs.rm(path.join(stateDir, PAIRING_ATTEMPTS_FILE), { force: true });
  await writeFileAtomic(path.join(stateDir, PAIRING_FILE), JSON.stringify(offer) + "\n", 0o600);
}

/** The access refusals of peers, as admission counts them. */
export interface PairingPeers {
  /** A wrong attempt: it counts against the peer's refusals. */
  denied(peer: string): void;
  refusedTooOften(peer: string): boolean;
}

/** The session a pairing request arrived on. */
export interface PairingPeer {
  readonly clientKey: string;
  readonly remoteAddress: string;
  readonly transcript: Buffer | null;
}

/**
 * The device side of pairing: answers requests on the reserved app
 * `perilink.pair`. The offer lives in the state directory, so every process
 * serving it (service processes, the one after an upgrade) sees the same
 * code and the same count of attempts: each attempt appends one byte to the
 * attempts file and reads its size, so concurrent attempts cannot share one.
 * A right proof trusts the session's client key and takes the offer away
 * (renamed to a name of its own first: of two right proofs at once, one wins).
 * A wrong one counts against the peer's access refusals too.
 */
export class Pairing {
  readonly #dir: string;
  readonly #identity: Identity;
  readonly #log: Logger;
  readonly #peerLog: Logger;
  readonly #peers: PairingPeers;

  constructor(stateDir: string, identity: Identity, log: Logger, peerLog: Logger, peers: PairingPeers) {
    this.#dir = stateDir;
    this.#identity = identity;
    this.#log = log;
    this.#peerLog = peerLog;
    this.#peers = peers;
  }

  /** Whether `peer` may make another attempt: one that used up its access refusals has its session ended instead. */
  admits(peer: string): boolean {
    return !this.#peers.refusedTooOften(peer);
  }

  /** A pairing request → its JSON answer: `{ok:true, apps, proof}` or `{ok:false, why}`. */
  async answer(payload: Uint8Array, peer: PairingPeer): Promise<string> {
    const again = ': run "perilink pair" on the device for a new one';
    const refuse = (why: string, counts = true): string => {
      if (counts) this.#peers.denied(peer.remoteAddress);
      this.#peerLog.warn("pairing_refused", { peer: peer.remoteAddress, clientKey: peer.clientKey, why });
      return JSON.stringify({ ok: false, why });
    };
    let proof: Buffer;
    try {
      const req = JSON.parse(Buffer.from(payload).toString("utf8")) as { proof?: unknown };
      if (typeof req.proof !== "string") throw new Error("no proof");
      proof = Buffer.from(req.proof, "base64");
    } catch {
      return refuse("the request is not a pairing proof");
    }
    if (peer.transcript === null || peer.clientKey === "") return refuse("the session is not sealed");
    const file = path.join(this.#dir, PAIRING_FILE);
    const offer = await readOffer(file);
    if (offer === null) return refuse("no pairing code is waiting" + again);
    if (Date.now() > offer.expiresAt) {
      await fs.rm(file, { force: true });
      return refuse("the pairing code has expired" + again);
    }
    const attempt = await this.#countAttempt();
    if (attempt > PAIRING_MAX_ATTEMPTS) {
      await fs.rm(file, { force: true });
      return refuse(`the pairing code's ${PAIRING_MAX_ATTEMPTS} attempts are used up` + again);
    }
    if (!proofMatches(proof, pairingProof(offer.code, peer.transcript, "host", peer.clientKey))) {
      const left = PAIRING_MAX_ATTEMPTS - attempt;
      return refuse(`wrong pairing code (${left} attempt${left === 1 ? "" : "s"} left)`);
    }
    const claimed = `${file}.${randomBytes(8).toString("hex")}.used`;
    try {
      await fs.rename(file, claimed); // this attempt takes the offer: nobody else can
    } catch {
      return refuse("the pairing code was used a moment ago" + again, false);
    }
    // What the key is trusted for now: the offer's apps and any it had before.
    let apps: string[] | null;
    try {
      ({ apps } = await addTrust(this.#dir, { fingerprint: peer.clientKey, apps: offer.apps, comment: `paired from ${peer.remoteAddress} ${new Date().toISOString()}` }));
    } catch (err) {
      await fs.rename(claimed, file).catch(() => {}); // not trusted: the code waits again (its attempts as they were)
      this.#log.warn("pairing_trust_failed", { peer: peer.remoteAddress, clientKey: peer.clientKey, error: err });
      return refuse("the device could not record this host's key (its log says why); try the same code again", false);
    }
    await fs.rm(claimed, { force: true });
    await fs.rm(path.join(this.#dir, PAIRING_ATTEMPTS_FILE), { force: true });
    this.#log.info("paired", { peer: peer.remoteAddress, clientKey: peer.clientKey, apps: apps ?? "*" });
    const device = keyFingerprint(this.#identity.publicKey);
    return JSON.stringify({ ok: true, apps, proof: pairingProof(offer.code, peer.transcript, "device", device).toString("base64") });
  }

  /** Appends one byte to the attempts file: its size is this attempt's number, whichever process counts. */
  async #countAttempt(): Promise<number> {
    const fh = await fs.open(path.join(this.#dir, PAIRING_ATTEMPTS_FILE), "a", 0o600);
    try {
      await fh.write(Buffer.from("."));
      return (await fh.stat()).size;
    } finally {
      await fh.close();
    }
  }
}

async function readOffer(file: string): Promise<PairingOffer | null> {
  try {
    const o = JSON.parse(await fs.readFile(file, "utf8")) as Partial<PairingOffer>;
    const code = typeof o.code === "string" ? normalizePairingCode(o.code) : null;
    if (o.version !== 1 || code === null || typeof o.expiresAt !== "number") return null;
    const apps = o.apps ?? null;
    if (apps !== null && !(Array.isArray(apps) && apps.every((a) => typeof a === "string"))) return null; // never widen a typo to every app
    return { version: 1, code, apps, expiresAt: o.expiresAt };
  } catch {
    return null;
  }
}
