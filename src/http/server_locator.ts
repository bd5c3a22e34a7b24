import net from "node:net";
import { canonicalAddress, formatHostPort, stripBrackets, stripZone } from "../address.ts";
import { ServerChangedError } from "../errors.ts";
import { keyFingerprint } from "../protocol/keys.ts";
import { identifyUdp, type Identification } from "../client/identify.ts";
import type { IdentityBook } from "../client/identity_book.ts";
import { placeOf, type KnownRecord } from "../client/known_servers.ts";
import { compareDestinations } from "../client/line/rfc6724.ts";
import type { NameResolver } from "../client/names/name_resolver.ts";
import { MAX_ADDRESSES_PER_NAME } from "../client/names/name_types.ts";

/**
 * What an origin's host leads to: a perilink server, proven at each of
 * `addresses` by an answer bound to that address (protocol.md §7.7); or a
 * plain HTTP device, known by the origin's own addresses alone.
 */
export type Located = { kind: "server"; serverId: string; addresses: string[] } | { kind: "plain"; addresses: string[] };

export interface LocatorOptions {
  resolver: NameResolver;
  book: IdentityBook;
  /** Ask each address for a signed identity (C1): off, every origin is a plain HTTP device. */
  probe: boolean;
  probeTimeoutMs: number;
  /** How long what an origin led to is kept before its name is asked again. */
  ttlMs: number;
  trustNew: boolean;
  maxOrigins: number;
}

/** An address that did not answer a probe is not asked again for this long (unless a record says a server was there). */
const SILENT_MS = 5 * 60_000;
/** Probes in flight at once, every origin together; more wait their turn. */
const MAX_PROBES = 32;

interface Cached {
  until: number;
  located: Promise<Located>;
}

/**
 * C1, C6, C7 for HTTP: finds what is behind an origin's host. A name is
 * turned into addresses (the client's name sources); each address is asked
 * for an identity bound to it, at once. A perilink server is known by its
 * identifier, pinned, and checked against the known-servers record; only
 * addresses whose answer is bound to them count as the server's, so a relay
 * elsewhere never joins its pool. Anything else is a plain HTTP device,
 * reached only at the addresses its own origin leads to. A name or address
 * the record ties to a perilink server never quietly becomes a plain device.
 */
export class ServerLocator {
  #o: LocatorOptions;
  #origins = new Map<string, Cached>();
  #silent = new Map<string, number>();
  #probes = new Map<string, Promise<Identification | null>>();
  #running = 0;
  #waiting: (() => void)[] = [];

  constructor(options: LocatorOptions) {
    this.#o = options;
  }

  /** What `host`:`port` leads to (cached for ttlMs; a failure is not cached). */
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
    if (!this.#o.probe) return { kind: "plain", addresses };
    const records = this.#records(host, addresses, port);
    const proofs = await Promise.all(addresses.map((a) => this.#prove(a, port, records.length > 0)));
    // The server the record names, where it proved itself; else the first (best) address's.
    const matches = (p: Identification | null): boolean => p !== null && records.some((r) => r.serverId === p.serverId && r.keyHex === p.publicKey.toString("hex"));
    const chosen = proofs.find((p) => records.length > 0 && !this.#o.trustNew ? matches(p) : p !== null) ?? null;
    if (chosen === null) {
      const other = proofs.find((p) => p !== null) ?? null;
      if (records.length > 0 && !this.#o.trustNew) throw this.#changed(host, port, addresses, records[0]!, other);
      return { kind: "plain", addresses };
    }
    const book = this.#o.book;
    book.checkKnown(host, port, chosen.address, chosen.serverId, chosen.publicKey, { trustNew: this.#o.trustNew });
    book.pin(chosen.serverId, chosen.publicKey, formatHostPort(chosen.address, port));
    book.recordKnown(host, chosen.address, port, chosen.serverId, chosen.publicKey);
    const same = addresses.filter((_, i) => proofs[i]?.bound === true && proofs[i]!.serverId === chosen.serverId && proofs[i]!.publicKey.equals(chosen.publicKey));
    // A server proved only by unbound answers (a first-release server, a wildcard socket): no address may join another's pool.
    if (same.length === 0) return { kind: "plain", addresses };
    return { kind: "server", serverId: chosen.serverId, addresses: same };
  }

  /** The known-servers records of the host and of each of its addresses on this port. */
  #records(host: string, addresses: string[], port: number): KnownRecord[] {
    const known = this.#o.book.known;
    const out: KnownRecord[] = [];
    for (const h of [host, ...addresses]) {
      const r = known.get(placeOf(h), port);
      if (r !== null && !out.some((o) => o.serverId === r.serverId)) out.push(r);
    }
    return out;
  }

  #changed(host: string, port: number, addresses: string[], rec: KnownRecord, found: Identification | null): ServerChangedError {
    const before = { serverId: rec.serverId, keyFingerprint: keyFingerprint(Buffer.from(rec.keyHex, "hex")) };
    const now = found ? { serverId: found.serverId, keyFingerprint: found.keyFingerprint } : { serverId: "", keyFingerprint: "" };
    const what = found ? `server ${found.serverId} (${found.keyFingerprint}) answers there instead` : `no perilink server proves itself at ${addresses.join(", ")} now`;
    return new ServerChangedError(
      host,
      port,
      before,
      now,
      `Cannot trust ${formatHostPort(host, port)}: it led to perilink server ${rec.serverId} (${before.keyFingerprint}) before, and ${what}; someone may be answering for it. If the device was replaced on purpose, run "perilink forget ${host}" or pass trustNew: true`,
    );
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

  /** One probe per address at a time, shared by every origin that asks meanwhile. */
  #prove(address: string, port: number, expected: boolean): Promise<Identification | null> {
    const k = `${address}|${port}`;
    if (!expected && (this.#silent.get(k) ?? 0) > Date.now()) return Promise.resolve(null);
    let p = this.#probes.get(k);
    if (p === undefined) {
      p = this.#probe(address, port, expected).finally(() => this.#probes.delete(k));
      this.#probes.set(k, p);
    }
    return p;
  }

  async #probe(address: string, port: number, expected: boolean): Promise<Identification | null> {
    if (this.#running >= MAX_PROBES) await new Promise<void>((r) => this.#waiting.push(r));
    this.#running++;
    try {
      // Where a server was before, a lost datagram must not make it a plain device: more tries, more time.
      return await identifyUdp(address, port, { timeoutMs: this.#o.probeTimeoutMs * (expected ? 4 : 1), attempts: expected ? 4 : 2, bound: true });
    } catch {
      const k = `${address}|${port}`;
      this.#silent.delete(k);
      if (this.#silent.size >= this.#o.maxOrigins) this.#silent.delete(this.#silent.keys().next().value!);
      this.#silent.set(k, Date.now() + SILENT_MS);
      return null;
    } finally {
      this.#running--;
      this.#waiting.shift()?.();
    }
  }
}
