import { KeyMismatchError } from "../errors.ts";
import { PinFile, type PinList } from "./pin_file.ts";

export interface KnownIdentity {
  serverId: string;
  publicKey: Buffer;
  /** When it was learned (ms since epoch). */
  at: number;
}

export interface IdentityBookOptions {
  /** Keep the pinned keys in this file too, so they outlive the process (see pin_file.ts). */
  pinFile?: string;
}

const addrKey = (host: string, port: number): string => `${host}|${port}`;

/**
 * What the client knows of servers' identities (C1): the identifier learned
 * at each address, for a bounded time and number of addresses, and the key
 * pinned for each server identifier. A later answer that claims a known
 * identifier with another key is refused: otherwise anyone who answers a probe
 * could steer other applications' traffic onto their session.
 *
 * Both maps are bounded by `maxEntries` and evict the least recently used
 * entry (a Map keeps insertion order: a use moves the entry to the end). With
 * a pin file, the pins are read from it at construction and again before a
 * server identifier is pinned for the first time (another client may have
 * pinned it since), and written back when a pin is added.
 */
export class IdentityBook {
  #ttlMs: number;
  #max: number;
  #byAddress = new Map<string, KnownIdentity>();
  #pins = new Map<string, string>();
  #file: PinFile | null;

  constructor(ttlMs: number, maxEntries: number, options: IdentityBookOptions = {}) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError("maxKnownAddresses must be an integer ≥ 1");
    this.#ttlMs = ttlMs;
    this.#max = maxEntries;
    this.#file = options.pinFile === undefined ? null : new PinFile(options.pinFile, maxEntries);
    if (this.#file) this.#merge(this.#file.read());
  }

  /** Called when writing the pin file fails (the pins stay in memory). */
  set onPinFileError(fn: ((err: Error) => void) | null) {
    if (this.#file) this.#file.onWriteError = fn;
  }

  /** The identity learned at host:port, if still fresh. */
  lookup(host: string, port: number, now = Date.now()): KnownIdentity | null {
    const k = addrKey(host, port);
    const e = this.#byAddress.get(k);
    if (!e) return null;
    this.#byAddress.delete(k);
    if (now - e.at > this.#ttlMs) return null;
    this.#byAddress.set(k, e);
    return e;
  }

  /** Throws `KeyMismatchError` when `serverId` is pinned to another key; pins it otherwise. */
  pin(serverId: string, publicKey: Buffer, where: string): void {
    const known = this.check(serverId, publicKey, where);
    this.#pins.delete(serverId);
    if (!known && this.#pins.size >= this.#max) this.#pins.delete(this.#pins.keys().next().value!);
    this.#pins.set(serverId, publicKey.toString("hex"));
    if (!known) this.#file?.save(this.#pinList);
  }

  /**
   * Throws `KeyMismatchError` when `serverId` is pinned to another key; pins
   * nothing. True when it is pinned to this one already.
   */
  check(serverId: string, publicKey: Buffer, where: string): boolean {
    let pinned = this.#pins.get(serverId);
    if (pinned === undefined && this.#file) {
      this.#merge(this.#file.read());
      pinned = this.#pins.get(serverId);
    }
    if (pinned !== undefined && pinned !== publicKey.toString("hex")) {
      throw new KeyMismatchError(
        serverId,
        `Cannot trust ${where}: it claims server ${serverId} but with another key than the one this client pinned for it; someone may be impersonating that server`,
      );
    }
    return pinned !== undefined;
  }

  /** Records what an address answered (after `pin()` accepted it). */
  remember(host: string, port: number, serverId: string, publicKey: Buffer, now = Date.now()): void {
    const k = addrKey(host, port);
    this.#byAddress.delete(k);
    if (this.#byAddress.size >= this.#max) this.#byAddress.delete(this.#byAddress.keys().next().value!);
    this.#byAddress.set(k, { serverId, publicKey, at: now });
  }

  forget(host: string, port: number): void {
    this.#byAddress.delete(addrKey(host, port));
  }

  get size(): number {
    return this.#byAddress.size;
  }

  /** Resolves when the pin file holds every pin added so far. */
  flush(): Promise<void> {
    return this.#file?.flush() ?? Promise.resolve();
  }

  #pinList = (): PinList => [...this.#pins];

  /**
   * Adds pins read from the file that memory does not have, as the least
   * recently used ones. For an identifier both know, memory's key stands: it
   * is the one this client verified.
   */
  #merge(fromFile: PinList): void {
    const added = fromFile.filter(([id]) => !this.#pins.has(id));
    if (added.length === 0) return;
    const merged = new Map<string, string>(added);
    for (const [id, hex] of this.#pins) merged.set(id, hex);
    while (merged.size > this.#max) merged.delete(merged.keys().next().value!);
    this.#pins = merged;
  }
}
