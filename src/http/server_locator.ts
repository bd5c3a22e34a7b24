import net from "node:net";
import { canonicalAddress, formatHostPort, stripBrackets, stripZone } from "../address.ts";
import { identifyUdp, type Identification } from "../client/identify.ts";
import type { IdentityBook } from "../client/identity_book.ts";
import { compareDestinations } from "../client/line/rfc6724.ts";
import type { NameResolver } from "../client/names/name_resolver.ts";
import { MAX_ADDRESSES_PER_NAME } from "../client/names/name_types.ts";

/** Which server an origin's host leads to, and the addresses it may be reached at, best first. */
export interface Located {
  /** The pool's key: `id:SERVER-ID` for a perilink server, `http:ADDRESS|PORT` for another HTTP device. */
  key: string;
  serverId: string | null;
  addresses: string[];
  /** Keys of earlier groups of unproven addresses this answer joined to `key` (names that share an address). */
  merged: string[];
}

export interface LocatorOptions {
  resolver: NameResolver;
  book: IdentityBook;
  /** Ask each address for a signed identity (C1): off, every HTTP server is known by its names' addresses alone. */
  probe: boolean;
  probeTimeoutMs: number;
  /** How long what an origin led to is kept before its name is asked again. */
  ttlMs: number;
  trustNew: boolean;
  maxOrigins: number;
}

/** An address that did not answer a probe is not asked again for this long. */
const NOT_PERILINK_MS = 5 * 60_000;

interface Cached {
  until: number;
  located: Promise<Located>;
}

/**
 * C1, C6, C7 for HTTP: finds the server behind an origin's host. A name is
 * turned into addresses (the client's name sources); each address is asked
 * for its signed identity on the same port, at once and under one deadline.
 * A perilink server (raw mode) is known by its identifier, pinned, and by
 * the known-servers record; only the addresses that proved to be it are
 * used. An HTTP device that does not answer probes is known by its
 * addresses: names whose answers share an address are one device, and the
 * union of their answers its addresses (plain HTTP proves nothing more).
 */
export class ServerLocator {
  #o: LocatorOptions;
  #origins = new Map<string, Cached>();
  #silent = new Map<string, number>();
  /** address|port → the key of the group of unproven addresses it belongs to; and each group's addresses. */
  #groupOf = new Map<string, string>();
  #groups = new Map<string, string[]>();

  constructor(options: LocatorOptions) {
    this.#o = options;
  }

  /** The server `host`:`port` leads to (cached for ttlMs; a failure is not cached). */
  locate(host: string, port: number): Promise<Located> {
    const origin = `${host}|${port}`;
    const now = Date.now();
    const hit = this.#origins.get(origin);
    if (hit && hit.until > now) return hit.located;
    const located = this.#locate(host, port);
    this.#origins.delete(origin);
    if (this.#origins.size >= this.#o.maxOrigins) this.#origins.delete(this.#origins.keys().next().value!);
    this.#origins.set(origin, { until: now + this.#o.ttlMs, located });
    located.catch(() => {
      if (this.#origins.get(origin)?.located === located) this.#origins.delete(origin);
    });
    return located;
  }

  /** Forgets what `host`:`port` led to, so the next request asks again (after every address failed). */
  invalidate(host: string, port: number): void {
    this.#origins.delete(`${host}|${port}`);
  }

  async #locate(host: string, port: number): Promise<Located> {
    const bare = stripBrackets(host);
    const addresses = net.isIP(stripZone(bare)) !== 0 ? [canonicalAddress(bare)] : await this.#resolve(bare);
    const proofs = this.#o.probe ? await Promise.all(addresses.map((a) => this.#prove(a, port))) : addresses.map(() => null);
    const first = proofs.findIndex((p) => p !== null);
    if (first >= 0) return this.#proven(host, port, addresses, proofs, proofs[first]!);
    return this.#unproven(addresses, port);
  }

  async #resolve(name: string): Promise<string[]> {
    const rows = await this.#o.resolver.resolve(name);
    const seen = new Set<string>();
    for (const r of rows) {
      if (seen.size >= MAX_ADDRESSES_PER_NAME) break;
      seen.add(canonicalAddress(r.address));
    }
    return [...seen].sort(compareDestinations);
  }

  async #prove(address: string, port: number): Promise<Identification | null> {
    const k = `${address}|${port}`;
    if ((this.#silent.get(k) ?? 0) > Date.now()) return null;
    try {
      return await identifyUdp(address, port, { timeoutMs: this.#o.probeTimeoutMs, attempts: 2 });
    } catch {
      if (this.#silent.size >= this.#o.maxOrigins) this.#silent.delete(this.#silent.keys().next().value!);
      this.#silent.set(k, Date.now() + NOT_PERILINK_MS);
      return null;
    }
  }

  #proven(host: string, port: number, addresses: string[], proofs: (Identification | null)[], chosen: Identification): Located {
    const book = this.#o.book;
    const where = formatHostPort(chosen.address, port);
    // The pin and the known-servers record first: an impostor at a known name is refused, not pooled.
    book.checkKnown(host, port, chosen.address, chosen.serverId, chosen.publicKey, { trustNew: this.#o.trustNew });
    book.pin(chosen.serverId, chosen.publicKey, where);
    book.recordKnown(host, chosen.address, port, chosen.serverId, chosen.publicKey);
    const same = addresses.filter((_, i) => proofs[i]?.serverId === chosen.serverId && proofs[i]!.publicKey.equals(chosen.publicKey));
    for (const a of same) book.remember(a, port, chosen.serverId, chosen.publicKey);
    return { key: `id:${chosen.serverId}`, serverId: chosen.serverId, addresses: same, merged: [] };
  }

  #unproven(addresses: string[], port: number): Located {
    const keys = addresses.map((a) => this.#groupOf.get(`${a}|${port}`)).filter((k): k is string => k !== undefined);
    const key = keys[0] ?? `http:${addresses[0]}|${port}`;
    const merged = [...new Set(keys)].filter((k) => k !== key);
    const members = new Set(this.#groups.get(key) ?? []);
    for (const m of merged) {
      for (const a of this.#groups.get(m) ?? []) members.add(a);
      this.#groups.delete(m);
    }
    for (const a of addresses) members.add(a);
    const list = [...members].slice(0, MAX_ADDRESSES_PER_NAME * 4);
    if (!this.#groups.has(key) && this.#groups.size >= this.#o.maxOrigins) this.#evictGroup();
    this.#groups.set(key, list);
    for (const a of list) this.#groupOf.set(`${a}|${port}`, key);
    return { key, serverId: null, addresses: list, merged };
  }

  #evictGroup(): void {
    const [oldest, list] = this.#groups.entries().next().value!;
    this.#groups.delete(oldest);
    for (const [k, g] of this.#groupOf) if (g === oldest && list.some((a) => k.startsWith(`${a}|`))) this.#groupOf.delete(k);
  }
}
