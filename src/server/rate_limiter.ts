export interface RateLimiterOptions {
  /** Tokens a source's bucket gains per second. */
  ratePerSecond: number;
  /** Most tokens one source's bucket holds; a source new to a table with room starts with this many. */
  burst: number;
  /** Most sources tracked at once. */
  maxSources: number;
  /** Tokens the bucket shared by every source gains per second (default: no global bucket). */
  globalRatePerSecond?: number;
  /** Most tokens the shared bucket holds; it starts full (default: no global bucket). */
  globalBurst?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Token buckets per source (for UDP identify probes: keyed by `peerKey()`),
 * under one bucket shared by all sources. A take succeeds only when both the
 * source's bucket and the shared one hold a whole token, and then costs one of
 * each; a take refused by either costs nothing.
 *
 * The table holds at most `maxSources` buckets and evicts the least recently
 * used one. A source that is not in a full table takes over the bucket it
 * evicts, with the tokens that bucket holds now: a fresh burst only while the
 * table has room. So sending from more addresses than the table holds, in
 * turn, earns no more than `maxSources` steady sources could (their bursts
 * once, then their refill), and memory stays bounded whatever the addresses.
 * The shared bucket bounds what all sources together can take, however many
 * there are.
 */
export class RateLimiter {
  #rate: number;
  #burst: number;
  #max: number;
  #globalRate: number;
  #global: Bucket;
  #globalBurst: number;
  #now: () => number;
  /** In order of use: the first key is the least recently used. */
  #buckets = new Map<string, Bucket>();

  constructor(options: RateLimiterOptions, now: () => number = monotonicMs) {
    const { ratePerSecond, burst, maxSources, globalRatePerSecond = Infinity, globalBurst = Infinity } = options;
    positive(ratePerSecond, "ratePerSecond");
    positive(globalRatePerSecond, "globalRatePerSecond");
    if (!(burst >= 1)) throw new RangeError(`Cannot create a rate limiter: burst must be at least 1, not ${burst}`);
    if (!(globalBurst >= 1)) throw new RangeError(`Cannot create a rate limiter: globalBurst must be at least 1, not ${globalBurst}`);
    if (!Number.isInteger(maxSources) || maxSources < 1) {
      throw new RangeError(`Cannot create a rate limiter: maxSources must be a positive integer, not ${maxSources}`);
    }
    this.#rate = ratePerSecond / 1000;
    this.#burst = burst;
    this.#max = maxSources;
    this.#globalRate = globalRatePerSecond / 1000;
    this.#globalBurst = globalBurst;
    this.#now = now;
    this.#global = { tokens: globalBurst, at: now() };
  }

  /** Sources tracked now. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Whether `source` has a bucket in the table. */
  has(source: string): boolean {
    return this.#buckets.has(source);
  }

  /** Whether `source`'s bucket is empty now (a source not in the table is not). Takes nothing; the table's order stays. */
  empty(source: string): boolean {
    const b = this.#buckets.get(source);
    if (b === undefined) return false;
    refill(b, this.#now(), this.#rate, this.#burst);
    return b.tokens < 1;
  }

  /** Takes one token for `source`; false when its bucket or the shared one is empty. */
  take(source: string): boolean {
    const now = this.#now();
    const buckets = this.#buckets;
    let b = buckets.get(source);
    if (b !== undefined) {
      buckets.delete(source);
    } else if (buckets.size < this.#max) {
      b = { tokens: this.#burst, at: now };
    } else {
      const lru = buckets.entries().next();
      if (lru.done) return false; // unreachable: the table is full
      buckets.delete(lru.value[0]);
      b = lru.value[1];
    }
    buckets.set(source, b);
    refill(b, now, this.#rate, this.#burst);
    if (b.tokens < 1) return false;
    const g = this.#global;
    refill(g, now, this.#globalRate, this.#globalBurst);
    if (g.tokens < 1) return false;
    b.tokens -= 1;
    g.tokens -= 1;
    return true;
  }
}

/** Milliseconds from a clock that never steps back. */
const monotonicMs = (): number => performance.now();

function refill(b: Bucket, now: number, ratePerMs: number, burst: number): void {
  if (now > b.at) {
    const t = b.tokens + (now - b.at) * ratePerMs;
    b.tokens = t < burst ? t : burst;
  }
  b.at = now;
}

function positive(v: number, name: string): void {
  if (!(v > 0)) throw new RangeError(`Cannot create a rate limiter: ${name} must be greater than 0, not ${v}`);
}
