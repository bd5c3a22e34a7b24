import { addressFamily, canonicalAddress, formatHostPort, ipv6Groups, isLinkLocal, mappedIPv4, stripBrackets, zoneOf } from "../address.ts";
import { ServerChangedError } from "../errors.ts";
import { keyFingerprint } from "../protocol/keys.ts";
import { normalizeName } from "./names/name_types.ts";
import { SyncedTable, type TableChanges } from "./synced_table.ts";

/** `host`:`port` now leads to `found`, not to `before`: the error says both and how to accept the change (`perilink forget FORGET`). */
export function serverChanged(host: string, port: number, before: { serverId: string; keyFingerprint: string }, found: { serverId: string; keyFingerprint: string }, forget: string, via = ""): ServerChangedError {
  return new ServerChangedError(host, port, before, found,
    `Cannot trust ${formatHostPort(host, port)}: it now leads to server ${found.serverId} (key ${found.keyFingerprint}), not to server ${before.serverId} (key ${before.keyFingerprint}) as before${via}; ` +
      `someone on the network may be answering for it. If that server was replaced on purpose, run "perilink forget ${forget}" (or connect with trustNew)`);
}

/** A name or an address, as the known-servers record spells it. */
export interface KnownPlace {
  kind: "name" | "address";
  /** Normalised: a name in lower case without its trailing dot; an address canonical (a link-local one with its zone). */
  host: string;
}

/** One row of the record: the server a name or an address (on a port) led to. */
export interface KnownRecord extends KnownPlace {
  port: number;
  serverId: string;
  /** The server's public key, hex. */
  keyHex: string;
}

/** How a connect may meet a server its host did not lead to before. */
export interface TrustChoice {
  /** Accept whatever server the host leads to now, and record it. */
  trustNew?: boolean;
  /** The key (`SHA256:…` fingerprint) the server must prove, learned out of band; the record is not consulted. */
  expectKey?: string;
}

/**
 * The place an application's host stands for. A name is spelled as the
 * record keeps it (lower case, no trailing dot), and one that is an address
 * (`127.0.0.1.`) is that address; an address canonical, an IPv4-mapped one
 * (`::ffff:192.0.2.1`) as its IPv4 address, a link-local one with its zone.
 */
export function placeOf(host: string): KnownPlace {
  const bare = normalizeName(stripBrackets(host));
  if (addressFamily(bare) === 0) return { kind: "name", host: bare };
  const zone = isLinkLocal(bare) ? zoneOf(bare) : "";
  const canonical = canonicalAddress(bare);
  const g = ipv6Groups(canonical);
  const v4 = g === null ? null : mappedIPv4(g);
  if (v4 !== null) return { kind: "address", host: v4 };
  return { kind: "address", host: canonical + (zone ? `%${zone}` : "") };
}

const keyOf = (p: KnownPlace, port: number): string => `${p.kind}:${p.host}|${port}`;

/**
 * The known-servers record (in the spirit of SSH's known_hosts): which
 * server — identifier and key — each name and each address led to, per port.
 * A signed identity proves *which* server answers; this record says whether
 * it is the one the name led to before. Without it an impostor with a fresh
 * identifier, answering a name first, would be taken as a new server.
 *
 * Records end only by `forget` (or, past `max` records, the least recently
 * used goes first: only hosts the application itself named are recorded, so
 * a peer cannot fill it). Kept in memory, and in the pin file when there is
 * one (identity_book.ts reads and writes it).
 */
export class KnownServers {
  #table: SyncedTable<KnownRecord>;

  constructor(max: number) {
    this.#table = new SyncedTable(max);
  }

  get(place: KnownPlace, port: number): KnownRecord | null {
    return this.#table.get(keyOf(place, port)) ?? null;
  }

  /**
   * Throws `ServerChangedError` unless the server (id, key) proved at
   * `address` may be what `host`:`port` leads to: the key expected, else the
   * record of the host, else (for a name with no record) the record of the
   * address. A host with no record accepts any server (it is recorded after
   * the connect), as does `trustNew`.
   */
  check(host: string, port: number, address: string, serverId: string, publicKey: Buffer, choice: TrustChoice): void {
    const found = { serverId, keyFingerprint: keyFingerprint(publicKey) };
    if (choice.expectKey !== undefined) {
      if (found.keyFingerprint === choice.expectKey) return;
      throw new ServerChangedError(host, port, { serverId: null, keyFingerprint: choice.expectKey }, found,
        `Cannot trust ${formatHostPort(host, port)}: the server there (${serverId}) proved key ${found.keyFingerprint}, not ${choice.expectKey} as expected; check the fingerprint with the device's owner ("perilink id" on it)`);
    }
    if (choice.trustNew) return;
    const place = placeOf(host);
    const own = this.get(place, port);
    const addressPlace = placeOf(address);
    const rec = own ?? (place.kind === "name" ? this.get(addressPlace, port) : null);
    if (rec === null || (rec.serverId === serverId && rec.keyHex === publicKey.toString("hex"))) return;
    const before = { serverId: rec.serverId, keyFingerprint: keyFingerprint(Buffer.from(rec.keyHex, "hex")) };
    throw serverChanged(host, port, before, found, (own ? place : addressPlace).host, own ? "" : ` (its address ${address} led to that server before)`);
  }

  /** Records that `place`:`port` leads to this server; the record it replaced (another server), if any. */
  record(place: KnownPlace, port: number, serverId: string, publicKey: Buffer): KnownRecord | null {
    const k = keyOf(place, port);
    const keyHex = publicKey.toString("hex");
    const before = this.#table.get(k) ?? null;
    this.#table.set(k, { ...place, port, serverId, keyHex });
    return before !== null && (before.serverId !== serverId || before.keyHex !== keyHex) ? before : null;
  }

  /** Whether the record would change (or is new) if `place` were recorded as this server: a write is due. */
  differs(place: KnownPlace, port: number, serverId: string, publicKey: Buffer): boolean {
    const r = this.get(place, port);
    return r === null || r.serverId !== serverId || r.keyHex !== publicKey.toString("hex");
  }

  /** A connect used the record of `place`:`port`: it is the most recently used. */
  touch(place: KnownPlace, port: number): void {
    this.#table.touch(keyOf(place, port));
  }

  /**
   * Forgets `target` — a name, an address, a server identifier or a key
   * fingerprint — on any port, and with it every record of the servers it
   * led to (a replaced device's other names and addresses go too, so the
   * replacement is not refused by one of them); returns the records removed.
   */
  forget(target: string): KnownRecord[] {
    const place = placeOf(target);
    const servers = new Set<string>();
    for (const [, r] of this.#table.entries()) {
      if ((r.kind === place.kind && r.host === place.host) || r.serverId === target || keyFingerprint(Buffer.from(r.keyHex, "hex")) === target) servers.add(r.serverId);
    }
    const gone: KnownRecord[] = [];
    for (const [k, r] of [...this.#table.entries()]) {
      if (!servers.has(r.serverId)) continue;
      this.#table.delete(k);
      gone.push(r);
    }
    return gone;
  }

  /** Every record, least recently used first. */
  list(): KnownRecord[] {
    return [...this.#table.entries()].map(([, r]) => r);
  }

  /** The record's side of a pin file write (synced_table.ts). */
  changes(): TableChanges<KnownRecord> {
    return this.#table.changes();
  }
  written(c: TableChanges<KnownRecord>): void {
    this.#table.written(c);
  }
  adopt(fromFile: readonly KnownRecord[]): void {
    this.#table.adopt(fromFile.map((r) => [keyOf(r, r.port), r]));
  }
}

/** The key a record is stored under (the pin file's merge uses it). */
export function knownRecordKey(r: KnownRecord): string {
  return keyOf(r, r.port);
}
