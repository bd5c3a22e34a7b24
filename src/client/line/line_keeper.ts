/**
 * The better line wins (C8): the client's measures of every address it
 * knows, and the policy that moves a server's session to a better one.
 *
 * - `rank()` orders a server's addresses for opening a session: measured
 *   and reachable ones by score (ties in RFC 6724 order), then the ones not
 *   measured yet in the order they were named, then the unreachable ones.
 * - `review()` measures a server's addresses (cached for `refreshMs`) and,
 *   when one scores at least `switchMargin` points above the session's,
 *   asks the entry to move there (make-before-break). It runs after every
 *   connect — never before: a connect that rides a session does not wait
 *   for a measure — and for every server with links every `refreshMs`.
 *   The margin is the hysteresis that keeps a session from flapping
 *   between two lines that measure alike. A server with one known address
 *   is not measured: there is nothing to choose.
 * - `failed()` forgets the measure of an address whose session just died,
 *   so it is measured again before it is trusted.
 */
import type { Logger } from "../../logger.ts";
import { measureLine, type LineMeasure } from "./line_measure.ts";
import { lineScore, type LinePreference } from "./line_score.ts";
import { linuxLineSystem, type LineSystem } from "./line_system.ts";
import { compareDestinations } from "./rfc6724.ts";

export interface LineAddress {
  host: string;
  port: number;
}

/** A session table row's line columns (Fig. 25). */
export interface LineRow {
  bandwidthMbps: number | null;
  routers: number | null;
  pathMtu: number | null;
  rttMs: number | null;
  score: number | null;
}

/** What the keeper needs from a server's entry. */
export interface LineEntry {
  readonly serverId: string;
  readonly addresses: readonly LineAddress[];
  readonly links: { readonly size: number };
  readonly active: { readonly address: LineAddress } | null;
  /** Opens a session on `a` and moves every link to it; false when it did not (busy, closed, failed). */
  moveTo(a: LineAddress): Promise<boolean>;
}

export interface LineKeeperOptions {
  preference: LinePreference;
  refreshMs: number;
  switchMargin: number;
  maxHops: number;
  probeTimeoutMs: number;
  maxAddresses: number;
  /** The OS seam of the measures (default: Linux's `ip`, `tc` and TTL-limited probes). */
  system?: LineSystem;
  log: Logger;
}

/**
 * What the client asks of its line keeper (this class implements it): the
 * seam a client's tests and its session table see.
 */
export interface LineKeeping {
  readonly stats: { measures: number; probesSent: number; switches: number; mostAtOnce: number };
  readonly preference: LinePreference;
  row(a: LineAddress): LineRow | null;
  rank<A extends LineAddress>(addresses: readonly A[]): A[];
  failed(a: LineAddress): void;
  review(entry: LineEntry): void;
  refresh(): Promise<void>;
  close(): Promise<void>;
}

interface Known {
  measure: LineMeasure | null;
  pending: Promise<LineMeasure> | null;
}

const key = (a: LineAddress): string => `${a.host}|${a.port}`;

/** Lines measured at once, over all servers: each measure sends probes and asks the OS (`ip`, `tc`), so a server listing many addresses cannot make the client do it all at once. */
export const MEASURES_AT_ONCE = 4;

/**
 * `system` with the facts of an interface (link speed, MTU, shaper rate)
 * kept for `ttlMs`: many addresses share few interfaces, so they cost one
 * `tc` per interface, not one per address. Routes stay per address (the
 * kernel's learned PMTU is per destination).
 */
export function cachedLinkFacts(system: LineSystem, ttlMs: number, maxDevs = 64): LineSystem {
  const facts = new Map<string, { at: number; value: Promise<number | null> }>();
  const cached = (kind: string, dev: string, read: () => Promise<number | null>): Promise<number | null> => {
    const k = `${kind}|${dev}`;
    const hit = facts.get(k);
    if (hit && performance.now() - hit.at < ttlMs) return hit.value;
    const value = read();
    facts.delete(k);
    facts.set(k, { at: performance.now(), value });
    while (facts.size > maxDevs * 3) facts.delete(facts.keys().next().value!);
    return value;
  };
  return {
    route: (address) => system.route(address),
    linkSpeedMbps: (dev) => cached("speed", dev, () => system.linkSpeedMbps(dev)),
    linkMtu: (dev) => cached("mtu", dev, () => system.linkMtu(dev)),
    shaperRateMbps: (dev) => cached("shaper", dev, () => system.shaperRateMbps(dev)),
  };
}
const same = (a: LineAddress, b: LineAddress): boolean => a.host === b.host && a.port === b.port;

export class LineKeeper implements LineKeeping {
  #o: LineKeeperOptions;
  #entries: () => Iterable<LineEntry>;
  #known = new Map<string, Known>();
  #reviewing = new Set<LineEntry>();
  #lastReview = new WeakMap<LineEntry, { at: number; count: number; active: LineAddress | null }>();
  #running = new Set<Promise<void>>();
  #timer: ReturnType<typeof setInterval> | null = null;
  #shutdown = new AbortController();
  #system: LineSystem;
  /** Measures running, and the ones waiting for a turn (MEASURES_AT_ONCE). */
  #measuring = 0;
  #waiting: (() => void)[] = [];
  /** Measures taken and datagrams they sent, and the most measures that ran at once (for the benchmark and logs). */
  readonly stats = { measures: 0, probesSent: 0, switches: 0, mostAtOnce: 0 };

  constructor(options: LineKeeperOptions, entries: () => Iterable<LineEntry>) {
    this.#o = options;
    this.#entries = entries;
    this.#system = cachedLinkFacts(options.system ?? linuxLineSystem, Math.max(options.refreshMs, 1000));
    if (options.refreshMs > 0) {
      this.#timer = setInterval(() => {
        for (const e of this.#entries()) if (e.links.size > 0 && e.active) this.#spawn(e, true);
      }, options.refreshMs);
      this.#timer.unref?.();
    }
  }

  get preference(): LinePreference {
    return this.#o.preference;
  }

  /** The last measure of `a`, or null. */
  known(a: LineAddress): LineMeasure | null {
    return this.#known.get(key(a))?.measure ?? null;
  }

  /** The score of `a`'s line, or null when not measured or unreachable. */
  score(a: LineAddress): number | null {
    const m = this.known(a);
    return m && m.reachable ? lineScore(m, this.#o.preference) : null;
  }

  row(a: LineAddress): LineRow | null {
    const m = this.known(a);
    if (!m) return null;
    return { bandwidthMbps: m.bandwidthMbps, routers: m.routers, pathMtu: m.pathMtu, rttMs: m.rttMs === null ? null : Math.round(m.rttMs * 100) / 100, score: this.score(a) };
  }

  /** Measures `a` (or returns its fresh measure); concurrent calls share one measure. */
  measure(a: LineAddress, serverId: string, force = false): Promise<LineMeasure> {
    const k = key(a);
    let known = this.#known.get(k);
    if (known?.pending) return known.pending;
    if (!force && known?.measure && performance.now() - known.measure.measuredAt < this.#o.refreshMs) return Promise.resolve(known.measure);
    if (!known) {
      known = { measure: null, pending: null };
      this.#known.set(k, known);
      if (this.#known.size > this.#o.maxAddresses) this.#known.delete(this.#known.keys().next().value!);
    }
    const slot = known;
    slot.pending = this.#turn(() =>
      measureLine(a.host, a.port, {
        system: this.#system,
        maxHops: this.#o.maxHops,
        timeoutMs: this.#o.probeTimeoutMs,
        serverId,
        signal: this.#shutdown.signal,
      }),
    ).then((m) => {
      slot.measure = m;
      slot.pending = null;
      this.stats.measures++;
      this.stats.probesSent += m.probesSent;
      return m;
    });
    return slot.pending;
  }

  /** Runs `fn` when fewer than MEASURES_AT_ONCE measures run. */
  async #turn<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#measuring >= MEASURES_AT_ONCE) await new Promise<void>((r) => this.#waiting.push(r));
    this.#measuring++;
    this.stats.mostAtOnce = Math.max(this.stats.mostAtOnce, this.#measuring);
    try {
      return await fn();
    } finally {
      this.#measuring--;
      this.#waiting.shift()?.();
    }
  }

  /** Opening order: best reachable first (ties: RFC 6724, then as named), then unmeasured, then unreachable. */
  rank<A extends LineAddress>(addresses: readonly A[]): A[] {
    const tier = (a: A): number => {
      const m = this.known(a);
      return m === null ? 1 : m.reachable ? 0 : 2;
    };
    return addresses
      .map((a, i) => ({ a, i, t: tier(a), s: this.score(a) ?? 0 }))
      .sort((x, y) => x.t - y.t || (x.t === 0 ? y.s - x.s || compareDestinations(x.a.host, y.a.host) : 0) || x.i - y.i)
      .map((x) => x.a);
  }

  /** A session on `a` just failed: measure it again before trusting it. */
  failed(a: LineAddress): void {
    const k = this.#known.get(key(a));
    if (k?.measure) k.measure = { ...k.measure, reachable: false };
  }

  /**
   * After a connect: measure the server's addresses and move its session if
   * a line is clearly better. Nothing to do (no promise, no timer) when the
   * server has one address, or nothing changed since its last review within
   * `refreshMs`: the common connect that rides a session stays cheap.
   */
  review(entry: LineEntry): void {
    if (entry.addresses.length < 2) return;
    const last = this.#lastReview.get(entry);
    const active = entry.active?.address ?? null;
    if (last && last.count === entry.addresses.length && last.active === active && performance.now() - last.at < this.#o.refreshMs) return;
    this.#lastReview.set(entry, { at: performance.now(), count: entry.addresses.length, active });
    this.#spawn(entry, false);
  }

  #spawn(entry: LineEntry, force: boolean): void {
    if (this.#shutdown.signal.aborted || this.#reviewing.has(entry)) return;
    this.#reviewing.add(entry);
    const p = this.#review(entry, force)
      .catch((err: unknown) => this.#o.log.debug("client_line_review_failed", { serverId: entry.serverId, error: err as Error }))
      .finally(() => {
        this.#reviewing.delete(entry);
        this.#running.delete(p);
      });
    this.#running.add(p);
  }

  async #review(entry: LineEntry, force: boolean): Promise<void> {
    const addresses = [...entry.addresses];
    if (addresses.length < 2) return; // nothing to choose: a server with one address costs no probe
    await Promise.all(addresses.map((a) => this.measure(a, entry.serverId, force)));
    const active = entry.active;
    if (!active || entry.links.size === 0 || this.#shutdown.signal.aborted) return;
    const best = this.rank(addresses)[0]!;
    const bestScore = this.score(best);
    if (bestScore === null || same(best, active.address)) return;
    const current = this.score(active.address) ?? 0;
    if (bestScore < current + this.#o.switchMargin) return;
    this.#o.log.info("client_line_switch", { serverId: entry.serverId, from: key(active.address), to: key(best), fromScore: current, toScore: bestScore });
    if (await entry.moveTo(best)) this.stats.switches++;
  }

  /** Measures the lines of every server in use now and moves sessions that have a clearly better line; resolves when done. */
  async refresh(): Promise<void> {
    for (const e of this.#entries()) if (e.links.size > 0 && e.active) this.#spawn(e, true);
    await Promise.all([...this.#running]);
  }

  /** Stops the timer and ends measures in progress; resolves when none runs. */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#shutdown.abort();
    await Promise.all([...this.#running]);
  }
}
