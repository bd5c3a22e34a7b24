import { KeyMismatchError } from "../errors.ts";

export interface KnownIdentity {
  serverId: string;
  publicKey: Buffer;
  /** When it was learned (ms since epoch). */
  at: number;
}

const addrKey = (host: string, port: number): string => `${host}|${port}`;

/**
 * What the client knows of servers' identities (C1): the identifier learned
 * at each address, for a bounded time and number of addresses, and the key
 * pinned for each server identifier. A later answer that claims a known
 * identifier with another key is refused: otherwise anyone who answers a probe
 * could steer other applications' traffic onto their session.
 */
export class IdentityBook {
  #ttlMs: number;
  #max: number;
  #byAddress = new Map<string, KnownIdentity>();
  #pins = new Map<string, string>();

  constructor(ttlMs: number, maxEntries: number) {
    this.#ttlMs = ttlMs;
    this.#max = maxEntries;
  }

  /** The identity learned at host:port, if still fresh. */
  lookup(host: string, port: number, now = Date.now()): KnownIdentity | null {
    const k = addrKey(host, port);
    const e = this.#byAddress.get(k);
    if (!e) return null;
    if (now - e.at > this.#ttlMs) {
      this.#byAddress.delete(k);
      return null;
    }
    return e;
  }

  /** Throws `KeyMismatchError` when `serverId` is pinned to another key; pins it otherwise. */
  pin(serverId: string, publicKey: Buffer, where: string): void {
    const hex = publicKey.toString("hex");
    const pinned = this.#pins.get(serverId);
    if (pinned === undefined) {
      if (this.#pins.size >= this.#max) this.#pins.delete(this.#pins.keys().next().value!);
      this.#pins.set(serverId, hex);
    } else if (pinned !== hex) {
      throw new KeyMismatchError(
        serverId,
        `Cannot trust ${where}: it claims server ${serverId} but with another key than the one this client pinned for it; someone may be impersonating that server`,
      );
    }
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
}
