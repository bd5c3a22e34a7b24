import { canonicalAddress } from "../../address.ts";
import type { NameRow } from "./name_resolver.ts";
import type { SourceName } from "./name_types.ts";

/** One row of the address list (Fig. 16 and 23 of the seed). */
export interface AddressRow {
  /** The name as the application gave it; for a numeric address, the address; for `ptr`, the name found. */
  name: string;
  address: string;
  source: SourceName;
  /** Seconds left before the answer expires (0: expired, asked again at the next connect); null for a numeric address. */
  ttl: number | null;
  /** The server identifier a signed probe or handshake proved for this address, or null before one did. */
  serverId: string | null;
}

interface Kept {
  row: NameRow;
  expiresAt: number;
}

/**
 * The address list: every (name, address, source) the client learned, and
 * which server each address proved to be. The server of an address comes
 * only from a signed identification, never from a name: when a probe of an
 * address contradicts what a name suggested, the row shows the server that
 * answered (the rows split), and the session table follows the same proof.
 * Bounded: the oldest rows go first.
 */
export class AddressList {
  #rows = new Map<string, Kept>();
  #servers = new Map<string, string>();
  #max: number;
  #now: () => number;

  constructor(maxRows: number, now: () => number = Date.now) {
    this.#max = maxRows;
    this.#now = now;
  }

  add(rows: readonly NameRow[]): void {
    const now = this.#now();
    for (const r of rows) {
      const key = `${r.name.toLowerCase()}|${canonicalAddress(r.address)}|${r.source}`;
      this.#rows.delete(key);
      this.#rows.set(key, { row: r, expiresAt: r.ttl === null ? Infinity : now + r.ttl * 1000 });
    }
    while (this.#rows.size > this.#max) this.#rows.delete(this.#rows.keys().next().value!);
    while (this.#servers.size > this.#max) this.#servers.delete(this.#servers.keys().next().value!);
  }

  /** Whether a row (name, name, source) is there: a numeric address names itself. */
  has(name: string, source: SourceName): boolean {
    return this.#rows.has(`${name.toLowerCase()}|${canonicalAddress(name)}|${source}`);
  }

  /** A signed identification proved `serverId` at `address`. */
  identified(address: string, serverId: string): void {
    const a = canonicalAddress(address);
    this.#servers.delete(a);
    this.#servers.set(a, serverId);
  }

  /** The server proved at `address`, if any. */
  serverOf(address: string): string | null {
    return this.#servers.get(canonicalAddress(address)) ?? null;
  }

  /** Every row, oldest first; an expired answer shows ttl 0 until the name is asked again. */
  rows(): AddressRow[] {
    const now = this.#now();
    const out: AddressRow[] = [];
    for (const k of this.#rows.values()) {
      out.push({
        name: k.row.name,
        address: k.row.address,
        source: k.row.source,
        ttl: k.expiresAt === Infinity ? null : Math.max(0, Math.ceil((k.expiresAt - now) / 1000)),
        serverId: this.serverOf(k.row.address),
      });
    }
    return out;
  }
}
