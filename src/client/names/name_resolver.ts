import { setMaxListeners } from "node:events";
import net from "node:net";
import { NameNotFoundError } from "../../errors.ts";
import type { DnsSource } from "./dns_source.ts";
import { nameSources } from "./name_sources.ts";
import type { NameSource, SourceName } from "./name_types.ts";
import { MAX_ADDRESSES_PER_NAME, normalizeName } from "./name_types.ts";
import { resolveOptions, type ResolutionOptions, type ResolvedOptions } from "./resolution_options.ts";
import { stripZone } from "../../address.ts";

/** One (name, address) pair a source gave: a row of the address list before its server is known. */
export interface NameRow {
  /** The name as the application gave it (or, for `ptr`, the name the reverse lookup found). */
  name: string;
  address: string;
  source: SourceName;
  /** Seconds the answer may be kept; null for a numeric address (it does not expire). */
  ttl: number | null;
}

interface Cached {
  rows: NameRow[];
  storedAt: number;
  expiresAt: number;
}

/**
 * C6: turns a name into addresses through the sources that are on. Every
 * source the standards allow for the name is asked at once; `resolve`
 * returns once they all answered, or `settleMs` after the first non-empty
 * answer — the others keep running to their deadline and report through
 * `onLate`, so a silent service delays nobody. Answers are cached for the
 * shortest TTL among them; a miss is not cached.
 */
export class NameResolver {
  readonly options: ResolvedOptions;
  #sources: NameSource[];
  #dns: DnsSource | null;
  #cache = new Map<string, Cached>();
  #inflight = new Map<string, Promise<NameRow[]>>();
  #signal: AbortSignal | undefined;
  #now: () => number;
  /** Rows that arrived after `resolve` returned (a slower source). */
  onLate: ((rows: NameRow[]) => void) | null = null;

  constructor(options: ResolutionOptions = {}, signal?: AbortSignal, now: () => number = Date.now) {
    const o = (this.options = resolveOptions(options));
    // Every query in flight listens for the shutdown: many at once are expected, not a leak.
    const stop = new AbortController();
    try {
      setMaxListeners(0, stop.signal);
    } catch {
      // a runtime without listener limits on signals
    }
    if (signal?.aborted) stop.abort(signal.reason);
    else signal?.addEventListener("abort", () => stop.abort(signal.reason), { once: true });
    this.#signal = stop.signal;
    this.#now = now;
    ({ sources: this.#sources, dns: this.#dns } = nameSources(o));
  }

  /** The rows for `name` (never empty), or `NameNotFoundError` when no source knows it. */
  resolve(name: string): Promise<NameRow[]> {
    if (typeof name !== "string" || name.length === 0 || name.length > 253) return Promise.reject(new TypeError("host must be a name of 1 to 253 characters"));
    const key = normalizeName(name);
    const hit = this.#cache.get(key);
    const now = this.#now();
    if (hit && hit.expiresAt > now) {
      this.#cache.delete(key); // least recently used goes first
      this.#cache.set(key, hit);
      const age = Math.floor((now - hit.storedAt) / 1000);
      return Promise.resolve(hit.rows.map((r) => ({ ...r, name, ttl: r.ttl === null ? null : Math.max(0, r.ttl - age) })));
    }
    let p = this.#inflight.get(key);
    if (!p) {
      p = this.#ask(name, key).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, p);
    }
    return p;
  }

  /** Whether reverse lookups are on (they need name servers). */
  get reverses(): boolean {
    return this.#dns !== null && this.options.reverse;
  }

  /**
   * Reverse lookup of a numeric address (PTR through the name servers), then
   * a forward lookup of each name found: rows with source `ptr`. Empty when
   * reverse lookups are off or nothing is known.
   */
  async reverse(address: string): Promise<NameRow[]> {
    if (!this.#dns || !this.options.reverse || net.isIP(stripZone(address)) === 0) return [];
    const ctx = { timeoutMs: this.options.timeoutMs, signal: this.#signal };
    const names = await this.#dns.reverse(address, ctx);
    const rows: NameRow[] = [];
    for (const { name, ttl } of names.slice(0, 4)) {
      const forward = await this.#dns.resolve(name, ctx);
      const all = forward.some((a) => a.address === address) ? forward : [{ address, ttl }, ...forward];
      for (const a of all) if (!rows.some((r) => r.name === name && r.address === a.address)) rows.push({ name, address: a.address, source: "ptr", ttl: Math.min(ttl, a.ttl) });
    }
    return rows;
  }

  async #ask(name: string, key: string): Promise<NameRow[]> {
    const ctx = { timeoutMs: this.options.timeoutMs, signal: this.#signal };
    const asked = this.#sources.filter((s) => s.accepts(name));
    const got: NameRow[][] = asked.map(() => []);
    let settled = 0;
    let early = false;
    const all = asked.map((s, i) =>
      s.resolve(name, ctx).then(
        (answers) => {
          got[i] = answers.map((a) => ({ name, address: a.address, source: s.name, ttl: a.ttl }));
          settled++;
          if (early && got[i]!.length > 0) {
            this.#store(key, got.flat());
            this.onLate?.(got[i]!);
          }
        },
        () => {
          settled++;
        },
      ),
    );
    await new Promise<void>((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const check = (): void => {
        if (settled === asked.length) {
          clearTimeout(timer);
          return resolve();
        }
        if (timer === undefined && got.some((g) => g.length > 0)) {
          timer = setTimeout(resolve, this.options.settleMs);
          timer.unref?.();
        }
      };
      for (const p of all) void p.then(check);
      check();
    });
    early = true;
    const rows = capAddresses(got.flat());
    if (rows.length === 0) {
      const tried = asked.map((s) => s.name).join(", ") || "none (no source that is on answers for such a name)";
      throw new NameNotFoundError(name, `Cannot resolve ${JSON.stringify(name)}: no name service knew it (asked: ${tried}); check the name, or the resolution options (order, nameServers, interfaces)`);
    }
    this.#store(key, rows);
    return rows;
  }

  #store(key: string, rows: NameRow[]): void {
    const ttl = Math.min(...rows.map((r) => r.ttl ?? Infinity));
    if (!(ttl > 0)) return;
    this.#cache.delete(key);
    const now = this.#now();
    this.#cache.set(key, { rows, storedAt: now, expiresAt: now + Math.min(ttl, 86_400) * 1000 });
    while (this.#cache.size > this.options.maxCachedNames) this.#cache.delete(this.#cache.keys().next().value!);
  }
}

/** `rows` with at most MAX_ADDRESSES_PER_NAME distinct addresses, the first ones found (by source order). */
function capAddresses(rows: NameRow[]): NameRow[] {
  const kept = new Set<string>();
  return rows.filter((r) => {
    if (!kept.has(r.address)) {
      if (kept.size === MAX_ADDRESSES_PER_NAME) return false;
      kept.add(r.address);
    }
    return true;
  });
}
