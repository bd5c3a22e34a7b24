import { readFileSync } from "node:fs";
import path from "node:path";
import { PinFileError } from "../errors.ts";
import { isUuid } from "../protocol/keys.ts";
import { knownRecordKey, placeOf, type KnownRecord } from "./known_servers.ts";
import type { TableChanges } from "./synced_table.ts";
import { writeFileAtomic } from "../runtime/atomic_file.ts";
import { withFileLock } from "../runtime/file_lock.ts";

/** Pinned keys, least recently used first: [serverId, public key as hex]. */
export type PinList = [serverId: string, keyHex: string][];

/** What the file holds: the pins, and the known-servers record (known_servers.ts). */
export interface PinData {
  pins: PinList;
  known: KnownRecord[];
}

/** What a write changes in the file: the pins and records set and deleted since the last write (synced_table.ts). */
export interface PinChanges {
  pins: TableChanges<string>;
  known: TableChanges<KnownRecord>;
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
  #changes: (() => PinChanges) | null = null;
  #written: (c: PinChanges, now: PinData) => void = () => {};
  /** Most pins, and most known-servers records, the file keeps (least recently used dropped first); unbounded when undefined. */
  maxPins: number | undefined;
  /** Called with a write's failure (the pins stay in memory, and the changes are written again with the next save). */
  onWriteError: ((err: PinFileError) => void) | null = null;
  /** The failure of the last write, or null when it succeeded. */
  lastError: PinFileError | null = null;

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
   * Writes `changes()` soon: the file keeps what other clients wrote, with
   * these changes made to it; `written(changes, content)` follows a write
   * that succeeded. Calls made while a write runs are folded into one more write.
   */
  save(changes: () => PinChanges, written: (c: PinChanges, now: PinData) => void): void {
    this.#changes = changes;
    this.#written = written;
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
          const c = this.#changes!();
          this.#written(c, await this.#write(c));
          this.lastError = null;
        } catch (err) {
          this.lastError = err instanceof PinFileError ? err : new PinFileError(this.file, `Cannot write pin file ${this.file}: ${(err as Error).message}; check that its directory exists and is writable`, { cause: err });
          this.onWriteError?.(this.lastError);
        }
      } while (this.#again);
    } finally {
      this.#writing = null;
    }
  }

  /**
   * Another client may share the file: under a lock file (created with O_EXCL; one left by a
   * crashed writer is taken over after LOCK_STALE_MS), read what it holds now and make only our
   * changes to it, so that nothing another client wrote (or deleted) is undone by our rename.
   */
  async #write(c: PinChanges): Promise<PinData> {
    const lock = `${this.file}.lock`;
    return withFileLock(lock, () => this.#merge(c), () => new PinFileError(this.file, `Cannot write pin file ${this.file}: ${lock} stays locked; if no perilink client runs, delete it`));
  }

  async #merge(c: PinChanges): Promise<PinData> {
    const file = this.read();
    const touched = <V>(t: TableChanges<V>): Set<string> => new Set([...t.deleted, ...t.set.map(([k]) => k)]);
    const pinKeys = touched(c.pins);
    const pins: PinList = [...file.pins.filter(([id]) => !pinKeys.has(id)), ...c.pins.set];
    const knownKeys = touched(c.known);
    const known = [...file.known.filter((r) => !knownKeys.has(knownRecordKey(r))), ...c.known.set.map(([, r]) => r)];
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
    return { pins, known };
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
  // As the record spells it now (a name in lower case, an address canonical): a spelling an older
  // client kept under the other key (`"name": "127.0.0.1"`) reads as what it is, not as corruption.
  return { ...placeOf(text), port, serverId, keyHex: publicKey };
}
