/**
 * Token buckets per source address, for UDP identify probes. The table is
 * bounded: when it is full, the oldest entry is evicted (Map keeps insertion
 * order), so a spoofed-source flood costs memory of at most `maxSources`.
 */
export class RateLimiter {
  #rate: number;
  #burst: number;
  #max: number;
  #now: () => number;
  #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(ratePerSecond: number, burst: number, maxSources: number, now: () => number = Date.now) {
    this.#rate = ratePerSecond;
    this.#burst = burst;
    this.#max = maxSources;
    this.#now = now;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** Takes one token for `source`; false when its bucket is empty. */
  take(source: string): boolean {
    const now = this.#now();
    let b = this.#buckets.get(source);
    if (b === undefined) {
      if (this.#buckets.size >= this.#max) {
        const oldest = this.#buckets.keys().next();
        if (!oldest.done) this.#buckets.delete(oldest.value);
      }
      b = { tokens: this.#burst, at: now };
      this.#buckets.set(source, b);
    } else {
      b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) * this.#rate) / 1000);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
