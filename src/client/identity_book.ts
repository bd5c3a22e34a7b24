import { KeyMismatchError } from "../errors.ts";
import { keyFingerprint } from "../protocol/keys.ts";
import { KnownServers, placeOf, type KnownRecord, type TrustChoice } from "./known_servers.ts";
import { PinFile, type PinData, type PinRemovals } from "./pin_file.ts";

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
  #removedPins = new Set<string>();
  #file: PinFile | null;
  /** Which server each name and address led to (known_servers.ts), kept in the same file. */
  readonly known: KnownServers;

  constructor(ttlMs: number, maxEntries: number, options: IdentityBookOptions = {}) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError("maxKnownAddresses must be an integer ≥ 1");
    this.#ttlMs = ttlMs;
    this.#max = maxEntries;
    this.known = new KnownServers(maxEntries);
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
    this.#removedPins.delete(serverId);
    if (!known) this.#save();
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

  /**
   * Throws `ServerChangedError` unless this server may be what `host`:`port`
   * leads to (KnownServers.check). With a pin file and no record of the host
   * in memory, the file is read first: another client may have recorded it.
   */
  checkKnown(host: string, port: number, address: string, serverId: string, publicKey: Buffer, choice: TrustChoice): void {
    if (this.#file && this.known.get(placeOf(host), port) === null && this.known.get(placeOf(address), port) === null) this.#merge(this.#file.read());
    this.known.check(host, port, address, serverId, publicKey, choice);
  }

  /**
   * Records that `host` (a name or an address the application named) and
   * the `address` it used, on `port`, lead to this server; written to the
   * pin file when something changed. Returns the records it replaced (the
   * caller accepted another server: trustNew, expectKey).
   */
  recordKnown(host: string, address: string, port: number, serverId: string, publicKey: Buffer): KnownRecord[] {
    const places = [placeOf(host), placeOf(address)].filter((p, i, all) => i === 0 || p.host !== all[0]!.host || p.kind !== all[0]!.kind);
    if (!places.some((p) => this.known.differs(p, port, serverId, publicKey))) return [];
    const replaced: KnownRecord[] = [];
    for (const p of places) {
      const before = this.known.record(p, port, serverId, publicKey);
      if (before) replaced.push(before);
    }
    this.#save();
    return replaced;
  }

  /**
   * Forgets what is known of `target` — a name, an address, a server
   * identifier or a key fingerprint: its known-servers records, and the pins
   * and cached identities of the servers they named (or of that server).
   * The next connect by it trusts what answers, as on first use. Returns the records removed.
   */
  forgetKnown(target: string): { records: KnownRecord[]; pins: number } {
    if (this.#file) this.#merge(this.#file.read());
    const records = this.known.forget(target);
    const servers = new Set(records.map((r) => r.serverId));
    for (const [id, hex] of this.#pins) if (id === target || keyFingerprint(Buffer.from(hex, "hex")) === target) servers.add(id);
    let pins = 0;
    for (const id of servers) {
      if (this.#pins.delete(id)) pins++;
      this.#removedPins.add(id);
    }
    for (const [k, e] of this.#byAddress) if (servers.has(e.serverId)) this.#byAddress.delete(k);
    if (records.length > 0 || pins > 0) this.#save();
    return { records, pins };
  }

  get size(): number {
    return this.#byAddress.size;
  }

  /** Resolves when the pin file holds every pin added so far. */
  flush(): Promise<void> {
    return this.#file?.flush() ?? Promise.resolve();
  }

  #save(): void {
    this.#file?.save(this.#snapshot, this.#removals);
  }

  #snapshot = (): PinData => ({ pins: [...this.#pins], known: this.known.list() });

  #removals = (): PinRemovals => {
    const pins = this.#removedPins;
    this.#removedPins = new Set();
    return { pins, known: this.known.takeRemoved() };
  };

  /**
   * Adds pins and records read from the file that memory does not have, as
   * the least recently used ones. For an identifier both know, memory's key
   * stands: it is the one this client verified.
   */
  #merge(fromFile: PinData): void {
    this.known.merge(fromFile.known);
    const added = fromFile.pins.filter(([id]) => !this.#pins.has(id) && !this.#removedPins.has(id));
    if (added.length === 0) return;
    const merged = new Map<string, string>(added);
    for (const [id, hex] of this.#pins) merged.set(id, hex);
    while (merged.size > this.#max) merged.delete(merged.keys().next().value!);
    this.#pins = merged;
  }
}
