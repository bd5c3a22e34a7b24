import { readFileSync } from "node:fs";
import path from "node:path";
import { PinFileError } from "../errors.ts";
import { isUuid } from "../protocol/keys.ts";
import { writeFileAtomic } from "../runtime/atomic_file.ts";
import { withFileLock } from "../runtime/file_lock.ts";

/** Pinned keys, least recently used first: [serverId, public key as hex]. */
export type PinList = [serverId: string, keyHex: string][];

const FILE_VERSION = 1;
const KEY_HEX = /^[0-9a-f]{64}$/;

/**
 * A client's pinned server keys on disk (`{"version":1,"pins":[{serverId,
 * publicKey}]}`, least recently used first), so a restarted client keeps
 * refusing an impostor. Written atomically: a temporary file with an
 * unpredictable name in the same directory, created exclusively (O_EXCL)
 * with mode 0600, synced, then renamed over the file; readers see the old
 * content or the new, never a mix. Writes are serialised and coalesced, and
 * clients sharing the file take turns (a lock file) and keep each other's pins.
 */
export class PinFile {
  readonly file: string;
  #writing: Promise<void> | null = null;
  #again = false;
  #snapshot: () => PinList = () => [];
  /** Most pins the file keeps (least recently used dropped first); unbounded when undefined. */
  maxPins: number | undefined;
  /** Called with a write's failure (the pins stay in memory). */
  onWriteError: ((err: PinFileError) => void) | null = null;

  constructor(file: string, maxPins?: number) {
    if (typeof file !== "string" || file.length === 0) throw new TypeError("pinFile must be a non-empty path");
    this.file = path.resolve(file);
    this.maxPins = maxPins;
  }

  /** The pins in the file; none when it does not exist. A corrupt file throws `PinFileError`. */
  read(): PinList {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw this.#error(`${(err as Error).message}`, err);
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw this.#error("it is not valid JSON", err);
    }
    const d = data as { version?: unknown; pins?: unknown };
    if (typeof d !== "object" || d === null || d.version !== FILE_VERSION || !Array.isArray(d.pins)) {
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
    return pins;
  }

  /** Writes `snapshot()` soon; calls made while a write runs are folded into one more write. */
  save(snapshot: () => PinList): void {
    this.#snapshot = snapshot;
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
          await this.#write(this.#snapshot());
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
   * crashed writer is taken over after LOCK_STALE_MS), keep the pins it wrote that we do not hold
   * (ours win for a server we both pin), so that none is lost to our rename.
   */
  async #write(mine: PinList): Promise<void> {
    const lock = `${this.file}.lock`;
    await withFileLock(lock, () => this.#merge(mine), () => new PinFileError(this.file, `Cannot write pin file ${this.file}: ${lock} stays locked; if no perilink client runs, delete it`));
  }

  async #merge(mine: PinList): Promise<void> {
    const held = new Set(mine.map(([id]) => id));
    const pins: PinList = [...this.read().filter(([id]) => !held.has(id)), ...mine];
    if (this.maxPins !== undefined && pins.length > this.maxPins) pins.splice(0, pins.length - this.maxPins);
    const body = JSON.stringify({ version: FILE_VERSION, pins: pins.map(([serverId, publicKey]) => ({ serverId, publicKey })) }, null, 1) + "\n";
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
