import { readFileSync } from "node:fs";
import path from "node:path";
import { PinFileError } from "../errors.ts";
import { isUuid } from "../protocol/keys.ts";
import { knownRecordKey, placeOf, type KnownRecord } from "./known_servers.ts";
import { writeFileAtomic } from "../runtime/atomic_file.ts";
import { withFileLock } from "../runtime/file_lock.ts";

/** Pinned keys, least recently used first: [serverId, public key as hex]. */
export type PinList = [serverId: string, keyHex: string][];

/** What the file holds: the pins, and the known-servers record (known_servers.ts). */
export interface PinData {
  pins: PinList;
  known: KnownRecord[];
}

/** What a write takes out of the file (forgotten since the last write), beside writing what memory holds. */
export interface PinRemovals {
  pins: Set<string>;
  known: Set<string>;
}

const FILE_VERSION = 1;
const KEY_HEX = /^[0-9a-f]{64}$/;

/**
 * A client's pinned server keys on disk (`{"version":1,"pins":[{serverId,
 * publicKey}],"known":[{name|address, port, serverId, publicKey}]}`, least
 * recently used first), so a restarted client keeps refusing an impostor
 * and knows which server each name led to. A file without `known` (an
 * older client's) reads as an empty record. Written atomically: a temporary file with an
 * unpredictable name in the same directory, created exclusively (O_EXCL)
 * with mode 0600, synced, then renamed over the file; readers see the old
 * content or the new, never a mix. Writes are serialised and coalesced, and
 * clients sharing the file take turns (a lock file) and keep each other's pins.
 */
export class PinFile {
  readonly file: string;
  #writing: Promise<void> | null = null;
  #again = false;
  #snapshot: () => PinData = () => ({ pins: [], known: [] });
  #removals: () => PinRemovals = () => ({ pins: new Set(), known: new Set() });
  /** Most pins, and most known-servers records, the file keeps (least recently used dropped first); unbounded when undefined. */
  maxPins: number | undefined;
  /** Called with a write's failure (the pins stay in memory). */
  onWriteError: ((err: PinFileError) => void) | null = null;

  constructor(file: string, maxPins?: number) {
    if (typeof file !== "string" || file.length === 0) throw new TypeError("pinFile must be a non-empty path");
    this.file = path.resolve(file);
    this.maxPins = maxPins;
  }

  /** The pins and records in the file; none when it does not exist. A corrupt file throws `PinFileError`. */
  read(): PinData {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { pins: [], known: [] };
      throw this.#error(`${(err as Error).message}`, err);
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw this.#error("it is not valid JSON", err);
    }
    const d = data as { version?: unknown; pins?: unknown; known?: unknown };
    if (typeof d !== "object" || d === null || d.version !== FILE_VERSION || !Array.isArray(d.pins) || (d.known !== undefined && !Array.isArray(d.known))) {
      throw this.#error(`it is not a version ${FILE_VERSION} pin file ({"version":1,"pins":[...]})`);
    }
    const pins: PinList = [];
    for (const [i, p] of (d.pins as unknown[]).entries()) {
      const e = p as { serverId?: unknown; publicKey?: unknown };
      if (typeof e !== "object" || e === null || typeof e.serverId !== "string" || !isUuid(e.serverId) || typeof e.publicKey !== "string" || !KEY_HEX.test(e.publicKey)) {
        throw this.#error(`entry ${i} is not {"serverId": a lower-case UUID, "publicKey": 64 hex digits}`);
      }
      pins.push([e.serverId, e.publicKey]);
    }
    const known: KnownRecord[] = [];
    for (const [i, k] of ((d.known ?? []) as unknown[]).entries()) {
      const r = readKnown(k);
      if (r === null) throw this.#error(`known entry ${i} is not {"name" or "address", "port": 1-65535, "serverId": a lower-case UUID, "publicKey": 64 hex digits}`);
      known.push(r);
    }
    return { pins, known };
  }

  /**
   * Writes `snapshot()` soon, taking `removals()` out of what the file holds;
   * calls made while a write runs are folded into one more write.
   */
  save(snapshot: () => PinData, removals: () => PinRemovals): void {
    this.#snapshot = snapshot;
    this.#removals = removals;
    if (this.#writing) {
      this.#again = true;
      return;
    }
    this.#writing = this.#writeLoop();
  }

  /** Resolves when every save so far is on disk (or has failed and been reported). */
  async flush(): Promise<void> {
    await this.#writing;
  }

  async #writeLoop(): Promise<void> {
    try {
      do {
        this.#again = false;
        try {
          await this.#write(this.#snapshot(), this.#removals());
        } catch (err) {
          this.onWriteError?.(err instanceof PinFileError ? err : new PinFileError(this.file, `Cannot write pin file ${this.file}: ${(err as Error).message}; check that its directory exists and is writable`, { cause: err }));
        }
      } while (this.#again);
    } finally {
      this.#writing = null;
    }
  }

  /**
   * Another client may share the file: under a lock file (created with O_EXCL; one left by a
   * crashed writer is taken over after LOCK_STALE_MS), keep the pins and records it wrote that we
   * do not hold (ours win where both have one), so that none is lost to our rename; what we
   * forgot goes.
   */
  async #write(mine: PinData, removed: PinRemovals): Promise<void> {
    const lock = `${this.file}.lock`;
    await withFileLock(lock, () => this.#merge(mine, removed), () => new PinFileError(this.file, `Cannot write pin file ${this.file}: ${lock} stays locked; if no perilink client runs, delete it`));
  }

  async #merge(mine: PinData, removed: PinRemovals): Promise<void> {
    const file = this.read();
    const held = new Set(mine.pins.map(([id]) => id));
    const pins: PinList = [...file.pins.filter(([id]) => !held.has(id) && !removed.pins.has(id)), ...mine.pins];
    const heldKnown = new Set(mine.known.map(knownRecordKey));
    const known = [...file.known.filter((r) => !heldKnown.has(knownRecordKey(r)) && !removed.known.has(knownRecordKey(r))), ...mine.known];
    if (this.maxPins !== undefined) {
      if (pins.length > this.maxPins) pins.splice(0, pins.length - this.maxPins);
      if (known.length > this.maxPins) known.splice(0, known.length - this.maxPins);
    }
    const body = JSON.stringify({
      version: FILE_VERSION,
      pins: pins.map(([serverId, publicKey]) => ({ serverId, publicKey })),
      known: known.map((r) => ({ [r.kind]: r.host, port: r.port, serverId: r.serverId, publicKey: r.keyHex })),
    }, null, 1) + "\n";
    await writeFileAtomic(this.file, body, 0o600);
  }

  #error(why: string, cause?: unknown): PinFileError {
    return new PinFileError(
      this.file,
      `Cannot read pin file ${this.file}: ${why}; repair it, or delete it to forget every pinned key (each server's next answer is then trusted as new)`,
      cause === undefined ? undefined : { cause },
    );
  }
}

const NAME_TEXT = /^[^\s\u0000-\u001f\u007f]{1,255}$/;

/** One `known` entry of the file, or null when it is not one. */
function readKnown(v: unknown): KnownRecord | null {
  const e = v as { name?: unknown; address?: unknown; port?: unknown; serverId?: unknown; publicKey?: unknown };
  if (typeof e !== "object" || e === null) return null;
  const { port, serverId, publicKey } = e;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) return null;
  if (typeof serverId !== "string" || !isUuid(serverId) || typeof publicKey !== "string" || !KEY_HEX.test(publicKey)) return null;
  const text = typeof e.name === "string" && e.address === undefined ? e.name : typeof e.address === "string" && e.name === undefined ? e.address : null;
  if (text === null || !NAME_TEXT.test(text)) return null;
  const place = placeOf(text); // as the record spells it: a name in lower case, an address canonical
  if (place.kind !== (e.name === undefined ? "address" : "name")) return null;
  return { ...place, port, serverId, keyHex: publicKey };
}
