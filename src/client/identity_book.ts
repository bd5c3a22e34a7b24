import { KeyMismatchError } from "../errors.ts";
import { keyFingerprint } from "../protocol/keys.ts";
import { KnownServers, placeOf, type KnownRecord, type TrustChoice } from "./known_servers.ts";
import { PinFile, type PinChanges, type PinData } from "./pin_file.ts";
import { SyncedTable } from "./synced_table.ts";

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
  /** Server id → public key (hex). */
  #pins: SyncedTable<string>;
  #file: PinFile | null;
  /** Which server each name and address led to (known_servers.ts), kept in the same file. */
  readonly known: KnownServers;

  constructor(ttlMs: number, maxEntries: number, options: IdentityBookOptions = {}) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError("maxKnownAddresses must be an integer ≥ 1");
    this.#ttlMs = ttlMs;
    this.#max = maxEntries;
    this.#pins = new SyncedTable(maxEntries);
    this.known = new KnownServers(maxEntries);
    this.#file = options.pinFile === undefined ? null : new PinFile(options.pinFile, maxEntries);
    this.#reread();
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
    if (this.check(serverId, publicKey, where)) {
      this.#pins.touch(serverId);
      return;
    }
    this.#pins.set(serverId, publicKey.toString("hex"));
    this.#save();
  }

  /**
   * Throws `KeyMismatchError` when `serverId` is pinned to another key; pins
   * nothing. True when it is pinned to this one already. A server this
   * client has no pin for is looked up in the pin file first (another client
   * may have pinned it since), and so is one pinned to another key (the pin
   * may have been forgotten since).
   */
  check(serverId: string, publicKey: Buffer, where: string): boolean {
    const hex = publicKey.toString("hex");
    let pinned = this.#pins.get(serverId);
    if (pinned !== hex && this.#file) {
      this.#reread();
      pinned = this.#pins.get(serverId);
    }
    if (pinned !== undefined && pinned !== hex) {
      throw new KeyMismatchError(
        serverId,
        `Cannot trust ${where}: it claims server ${serverId} but with another key than the one this client pinned for it; someone may be impersonating that server. If the server's key was changed on purpose, run "perilink forget ${serverId}"`,
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
   * leads to (KnownServers.check). With a pin file, the file is read first
   * when memory has no record of the host (another client may have made
   * one), and again before refusing (the record may have been forgotten or
   * changed since).
   */
  checkKnown(host: string, port: number, address: string, serverId: string, publicKey: Buffer, choice: TrustChoice): void {
    if (this.#file && this.known.get(placeOf(host), port) === null && this.known.get(placeOf(address), port) === null) this.#reread();
    try {
      this.known.check(host, port, address, serverId, publicKey, choice);
    } catch (err) {
      if (!this.#file) throw err;
      this.#reread();
      this.known.check(host, port, address, serverId, publicKey, choice);
    }
  }

  /**
   * Records that `host` (a name or an address the application named) and
   * the `address` it used, on `port`, lead to this server; written to the
   * pin file when something changed. Returns the records it replaced (the
   * caller accepted another server: trustNew, expectKey, or the name's own
   * record over its address's).
   */
  recordKnown(host: string, address: string, port: number, serverId: string, publicKey: Buffer): KnownRecord[] {
    const places = [placeOf(host), placeOf(address)].filter((p, i, all) => i === 0 || p.host !== all[0]!.host || p.kind !== all[0]!.kind);
    if (!places.some((p) => this.known.differs(p, port, serverId, publicKey))) {
      for (const p of places) this.known.touch(p, port);
      return [];
    }
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
   * identifier or a key fingerprint: the known-servers records of the
   * servers it led to (all their names and addresses), and their pins and
   * cached identities. The next connect by it trusts what answers, as on
   * first use. Returns the records removed and the pins dropped; the pin
   * file is written at once (`flush()`, then `writeError`).
   */
  forgetKnown(target: string): { records: KnownRecord[]; pins: number } {
    this.#reread();
    const records = this.known.forget(target);
    const servers = new Set(records.map((r) => r.serverId));
    for (const [id, hex] of this.#pins.entries()) if (id === target || keyFingerprint(Buffer.from(hex, "hex")) === target) servers.add(id);
    let pins = 0;
    for (const id of servers) if (this.#pins.delete(id)) pins++;
    for (const [k, e] of this.#byAddress) if (servers.has(e.serverId)) this.#byAddress.delete(k);
    if (records.length > 0 || pins > 0) this.#save();
    return { records, pins };
  }

  /** The failure of the pin file's last write (the changes stay and are written with the next one), or null. */
  get writeError(): Error | null {
    return this.#file?.lastError ?? null;
  }

  get size(): number {
    return this.#byAddress.size;
  }

  /** Resolves when the pin file holds every pin added so far. */
  flush(): Promise<void> {
    return this.#file?.flush() ?? Promise.resolve();
  }

  #save(): void {
    this.#file?.save(this.#changes, this.#written);
  }

  #changes = (): PinChanges => ({ pins: this.#pins.changes(), known: this.known.changes() });

  #written = (c: PinChanges, now: PinData): void => {
    this.#pins.written(c.pins);
    this.known.written(c.known);
    this.#adopt(now);
  };

  /** The file's pins and records, for everything this client has not changed since its last write. */
  #reread(): void {
    if (this.#file) this.#adopt(this.#file.read());
  }

  #adopt(file: PinData): void {
    this.#pins.adopt(file.pins);
    this.known.adopt(file.known);
  }
}
