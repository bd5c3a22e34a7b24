import net from "node:net";
import type { Logger } from "../../logger.ts";
import type { ServerEntry } from "../server_entry.ts";
import { AddressList, type AddressRow } from "./address_list.ts";
import { raceAddresses } from "./address_race.ts";
import { canonicalAddress, isLinkLocal, stripZone } from "../../address.ts";
import { NameResolver, type NameRow } from "./name_resolver.ts";
import { MAX_ADDRESSES_PER_NAME, normalizeName } from "./name_types.ts";
import type { ResolutionOptions } from "./resolution_options.ts";

/** What the name book needs from the client's session table. */
export interface NameBookHost {
  /** The servers the client holds now. */
  entries(): Iterable<ServerEntry>;
  /** The server a signed probe proved at address:port, still trusted; null when unknown. */
  isServer(address: string, port: number): string | null;
  /** A signed UDP probe of address:port (pinned and remembered): the server it proved; rejects when none answered or the proof failed. */
  prove(address: string, port: number): Promise<string>;
  log: Logger;
}

/** Addresses proved at once in the background (failover candidates of a name), and how long one that did not answer is not asked again. */
const PROOFS_AT_ONCE = 4;
const UNPROVEN_FOR_MS = 60_000;

/** The table's C1 identification of one address. */
type Identify = (address: string) => ServerEntry | Promise<ServerEntry>;
/** Returns the entry when the name (or address) the application gave may lead to its server; throws (`PERILINK_SERVER_CHANGED`) otherwise. */
type Accept = (entry: ServerEntry, address: string) => ServerEntry;

/** The entry if `accept` takes it, else null. */
function acceptable(entry: ServerEntry | null, address: string, accept: Accept): ServerEntry | null {
  if (entry === null) return null;
  try {
    return accept(entry, address);
  } catch {
    return null;
  }
}

/** How long a reverse lookup of one address is not repeated. */
const REVERSE_EVERY_MS = 60_000;

/**
 * Between the application's host and the session table (C6, C7): names
 * become addresses through the resolver, every (name, address, source) goes
 * into the address list, and a name's server is decided **before any socket
 * is opened** — an address of the name that is already proved, or being
 * probed, decides; only otherwise is an address probed. The signed
 * identifier stays the authority: a name only suggests addresses; one joins
 * a server's failover addresses only once a probe proved it there, and a
 * probe that shows another server at one removes it again.
 */
export class NameBook {
  #resolver: NameResolver;
  #list: AddressList;
  #host: NameBookHost;
  #probing = new Map<string, Promise<ServerEntry>>();
  #reversed = new Map<string, number>();
  #maxRows: number;
  /** Background proofs waiting (address|port → the entries that want it), running, and the ones that failed lately. */
  #proofQueue = new Map<string, { address: string; port: number; for: Set<ServerEntry> }>();
  #proofsOut = new Map<string, { address: string; port: number; for: Set<ServerEntry> }>();
  #unproven = new Map<string, number>();

  constructor(options: ResolutionOptions | undefined, signal: AbortSignal, maxRows: number, host: NameBookHost) {
    this.#resolver = new NameResolver(options, signal);
    this.#list = new AddressList(maxRows);
    this.#maxRows = maxRows;
    this.#host = host;
    this.#resolver.onLate = (rows) => {
      this.#list.add(rows);
      this.#offer(rows, (e) => [...e.links].filter((l) => normalizeName(l.requestedHost) === normalizeName(rows[0]!.name)).map((l) => l.requestedPort));
    };
  }

  /**
   * The server entry for host:port and the numeric address chosen for it.
   * `identify(address)` is the table's C1 identification of one address.
   */
  async entryFor(host: string, port: number, identify: Identify, accept: Accept): Promise<{ entry: ServerEntry; address: string }> {
    const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
    if (net.isIP(stripZone(bare)) !== 0) {
      if (!this.#list.has(bare, "numeric")) this.#list.add([{ name: bare, address: bare, source: "numeric", ttl: null }]);
      const entry = accept(await this.#probe(bare, port, identify), bare);
      this.#reverse(bare, port);
      return { entry, address: bare };
    }
    const rows = await this.#resolver.resolve(bare);
    this.#list.add(rows);
    const addresses = [...new Set(rows.map((r) => r.address))];
    // C7: an address of this name that is already proved decides, without a probe or a socket —
    // when that server is one the name may lead to (the known-servers record, an expected key).
    for (const a of addresses) {
      if (this.#host.isServer(a, port) === null) continue;
      const entry = acceptable(await identify(a), a, accept);
      if (entry) return { entry, address: a };
    }
    // …or one being probed right now (another name, or another application, asked for it).
    for (const a of addresses) {
      const p = this.#probing.get(`${canonicalAddress(a)}|${port}`);
      const entry = p ? acceptable(await p.catch(() => null), a, accept) : null;
      if (entry) return { entry, address: a };
    }
    // Several addresses: probed in parallel, staggered (a dead one costs 150 ms, not a probe timeout);
    // one that proves a server the name may not lead to loses, and the others go on.
    const won = await raceAddresses(addresses, async (a) => accept(await this.#probe(a, port, identify), a));
    return { entry: won.value, address: won.address };
  }

  /**
   * After a link joined `entry` by `host`: the name's other addresses (of
   * answers not expired, the first 16) become failover addresses once proved.
   */
  joined(host: string, port: number, entry: ServerEntry): void {
    const name = normalizeName(host);
    const seen = new Set<string>();
    const rows = this.#list.rows().filter((r) => {
      if (r.source === "numeric" || r.ttl === 0 || normalizeName(r.name) !== name) return false;
      const a = canonicalAddress(r.address);
      if (!seen.has(a) && seen.size >= MAX_ADDRESSES_PER_NAME) return false;
      seen.add(a);
      return true;
    });
    this.#offer(rows, () => [port], entry);
  }

  /** A signed identification proved `entry`'s server at address:port. */
  identified(address: string, port: number, entry: ServerEntry): void {
    if (this.#list.serverOf(address) === entry.serverId) return; // nothing new (the common case: a cache hit)
    this.#list.identified(address, entry.serverId);
    for (const e of this.#host.entries()) if (e !== entry) e.dropAddress({ host: address, port });
  }

  /** The last list each server announced (ADDRESSES), and when it was acted on. */
  #announced = new WeakMap<ServerEntry, { list: string; at: number[] }>();

  rows(): AddressRow[] {
    return this.#list.rows();
  }

  /**
   * The server's own list of where it listens (ADDRESSES, docs/protocol.md
   * §5.4), from a session of `entry`: rows of source `server`, and each
   * address a failover address of `entry` once a signed probe there proves
   * the same server — as a name's answer, since a server may name addresses
   * that are not its own (at most MAX_ADVERTISED a frame).
   */
  fromServer(entry: ServerEntry, announced: readonly { host: string; port: number }[], via: string): void {
    // A list is acted on when it changed, and at most ANNOUNCEMENTS_PER_MINUTE times a minute per
    // server: a server that keeps sending new lists cannot fill the address list or the proof queue.
    const key = announced.map((a) => `${a.host} ${a.port}`).join(",");
    const seen = this.#announced.get(entry);
    if (seen?.list === key) return;
    const now = Date.now();
    const recent = (seen?.at ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= ANNOUNCEMENTS_PER_MINUTE) return;
    this.#announced.set(entry, { list: key, at: [...recent, now] });
    // Unicast only, and loopback only from a session that is itself over loopback: an announcement
    // cannot make this client probe multicast groups or its own host's ports.
    const list = announced.filter((a) => isUnicast(a.host) && (isLoopback(a.host) === isLoopback(stripZone(via))));
    const rows = list.map((a) => ({ name: a.host, address: a.host, source: "server" as const, ttl: null }));
    this.#list.add(rows);
    for (const port of new Set(list.map((a) => a.port))) this.#offer(rows.filter((_, i) => list[i]!.port === port), () => [port], entry);
  }

  #probe(address: string, port: number, identify: Identify): Promise<ServerEntry> {
    const key = `${canonicalAddress(address)}|${port}`;
    let p = this.#probing.get(key);
    if (!p) {
      p = Promise.resolve(identify(address)).finally(() => this.#probing.delete(key));
      this.#probing.set(key, p);
    }
    return p;
  }

  /**
   * Makes the rows' addresses failover addresses of entries (all, or `only`)
   * for the ports `portsOf` gives — each only once a signed probe proved it
   * to be that entry's server (C7): a name's answer alone never adds an
   * address, so a poisoned answer cannot merge two servers or make the
   * client measure and dial addresses it chose. Unproved ones are probed in
   * the background, a few at a time.
   */
  #offer(rows: readonly (NameRow | AddressRow)[], portsOf: (e: ServerEntry) => number[], only?: ServerEntry): void {
    const entries = only ? [only] : [...this.#host.entries()];
    for (const e of entries) {
      for (const port of new Set(portsOf(e))) {
        for (const r of rows) {
          if (e.addresses.some((a) => a.port === port && canonicalAddress(a.host) === canonicalAddress(r.address))) continue;
          const proved = this.#host.isServer(r.address, port);
          if (proved === e.serverId) e.addAddress({ host: r.address, port });
          else if (proved === null) this.#queueProof(r.address, port, e);
        }
      }
    }
  }

  #queueProof(address: string, port: number, entry: ServerEntry): void {
    const key = `${canonicalAddress(address)}|${port}`;
    if ((this.#unproven.get(key) ?? 0) > Date.now()) return;
    const queued = this.#proofQueue.get(key) ?? this.#proofsOut.get(key);
    if (queued) {
      queued.for.add(entry);
      return;
    }
    if (this.#proofQueue.size >= this.#maxRows) return; // bounded: the next connect offers it again
    this.#proofQueue.set(key, { address, port, for: new Set([entry]) });
    this.#runProofs();
  }

  #runProofs(): void {
    while (this.#proofsOut.size < PROOFS_AT_ONCE && this.#proofQueue.size > 0) {
      const [key, job] = this.#proofQueue.entries().next().value!;
      this.#proofQueue.delete(key);
      this.#proofsOut.set(key, job);
      this.#host.prove(job.address, job.port).then(
        (serverId) => {
          this.#list.identified(job.address, serverId);
          for (const e of job.for) if (e.serverId === serverId) e.addAddress({ host: job.address, port: job.port });
        },
        (err: unknown) => {
          this.#unproven.delete(key);
          this.#unproven.set(key, Date.now() + UNPROVEN_FOR_MS);
          while (this.#unproven.size > this.#maxRows) this.#unproven.delete(this.#unproven.keys().next().value!);
          this.#host.log.debug("client_address_unproved", { address: job.address, port: job.port, error: err as Error });
        },
      ).finally(() => {
        this.#proofsOut.delete(key);
        this.#runProofs();
      });
    }
  }

  /** In the background: PTR of a numeric address, then the names' addresses join the server that has it. */
  #reverse(address: string, port: number): void {
    if (!this.#resolver.reverses) return;
    const now = Date.now();
    const key = canonicalAddress(address);
    if ((this.#reversed.get(key) ?? 0) > now) return;
    this.#reversed.set(key, now + REVERSE_EVERY_MS);
    while (this.#reversed.size > this.#maxRows) this.#reversed.delete(this.#reversed.keys().next().value!);
    this.#resolver.reverse(address).then(
      (rows) => {
        if (rows.length === 0) return;
        this.#list.add(rows);
        this.#offer(rows, (e) => (e.addresses.some((a) => a.port === port && canonicalAddress(a.host) === key) ? [port] : []));
      },
      (err: unknown) => this.#host.log.debug("client_reverse_lookup_failed", { address, error: err as Error }),
    );
  }
}

/** Announced lists (ADDRESSES) one server may have acted on in a minute. */
const ANNOUNCEMENTS_PER_MINUTE = 4;

function isLoopback(address: string): boolean {
  return address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127.");
}

/** Not the unspecified address, multicast, broadcast, the reserved 240/4 or link-local. */
function isUnicast(address: string): boolean {
  if (net.isIPv4(address)) {
    const first = Number(address.split(".")[0]);
    return first !== 0 && first < 224 && !address.startsWith("169.254.");
  }
  const a = address.toLowerCase();
  return net.isIPv6(a) && a !== "::" && !a.startsWith("ff") && !isLinkLocal(a);
}
