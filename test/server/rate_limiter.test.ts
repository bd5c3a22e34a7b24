import assert from "node:assert/strict";
import { test } from "node:test";
import { RateLimiter, type RateLimiterOptions } from "../../src/server/rate_limiter.ts";

/** A limiter on a hand-driven clock. */
function limiter(options: Partial<RateLimiterOptions> = {}): { rl: RateLimiter; advance(ms: number): void } {
  let now = 1_000_000;
  const rl = new RateLimiter({ ratePerSecond: 10, burst: 5, maxSources: 100, ...options }, () => now);
  return { rl, advance: (ms) => (now += ms) };
}

/** How many of `n` takes for `key` succeed. */
function takes(rl: RateLimiter, key: string, n: number): number {
  let ok = 0;
  for (let i = 0; i < n; i++) if (rl.take(key)) ok++;
  return ok;
}

test("a new source gets its burst, then nothing until tokens refill", () => {
  const { rl } = limiter();
  assert.equal(takes(rl, "a", 20), 5);
  assert.equal(rl.take("a"), false);
});

test("tokens refill at ratePerSecond, continuously", () => {
  const { rl, advance } = limiter();
  takes(rl, "a", 5);
  advance(99);
  assert.equal(rl.take("a"), false, "0.99 token is not a token");
  advance(1);
  assert.equal(rl.take("a"), true, "one token after 100 ms at 10/s");
  assert.equal(rl.take("a"), false);
  advance(300);
  assert.equal(takes(rl, "a", 10), 3);
});

test("refill never lifts a bucket above its burst", () => {
  const { rl, advance } = limiter();
  takes(rl, "a", 5);
  advance(60_000);
  assert.equal(takes(rl, "a", 20), 5);
});

test("sources have buckets of their own", () => {
  const { rl } = limiter();
  assert.equal(takes(rl, "a", 10), 5);
  assert.equal(takes(rl, "b", 10), 5);
  assert.equal(rl.size, 2);
});

test("the table never holds more than maxSources buckets", () => {
  const { rl } = limiter({ maxSources: 3 });
  for (let i = 0; i < 50; i++) rl.take(`s${i}`);
  assert.equal(rl.size, 3);
  assert.deepEqual([rl.has("s47"), rl.has("s48"), rl.has("s49"), rl.has("s0")], [true, true, true, false]);
});

test("a full table evicts the least recently used source, not the oldest one", () => {
  const { rl } = limiter({ maxSources: 3 });
  rl.take("a");
  rl.take("b");
  rl.take("c");
  rl.take("a"); // a is now the most recently used; b the least
  rl.take("d");
  assert.equal(rl.has("b"), false, "b evicted");
  assert.deepEqual([rl.has("a"), rl.has("c"), rl.has("d")], [true, true, true]);
  rl.take("c");
  rl.take("e");
  assert.equal(rl.has("a"), false, "then a, the least recently used");
  assert.deepEqual([rl.has("c"), rl.has("d"), rl.has("e")], [true, true, true]);
});

test("a refused take still counts as use: a flooding source is not the one evicted", () => {
  const { rl } = limiter({ maxSources: 2 });
  rl.take("quiet");
  takes(rl, "loud", 50);
  rl.take("new");
  assert.equal(rl.has("loud"), true);
  assert.equal(rl.has("quiet"), false);
});

test("a source that displaces another from a full table takes over that bucket as it stands, not a fresh burst", () => {
  const { rl, advance } = limiter({ maxSources: 2 });
  assert.equal(takes(rl, "a", 5), 5);
  assert.equal(takes(rl, "b", 5), 5);
  assert.equal(takes(rl, "c", 5), 0, "c gets a's empty bucket");
  advance(200);
  assert.equal(takes(rl, "d", 5), 2, "d gets b's bucket, refilled for 200 ms");
});

test("cycling through more sources than the table holds yields no more than the table's bursts and refill", () => {
  const max = 10;
  const { rl, advance } = limiter({ maxSources: max, ratePerSecond: 10, burst: 5 });
  let ok = 0;
  const seconds = 3;
  for (let ms = 0; ms < seconds * 1000; ms += 10) {
    for (let i = 0; i < 40; i++) if (rl.take(`cycle${(ms / 10) * 40 + i}`)) ok++;
    advance(10);
  }
  assert.ok(ok <= max * 5 + max * 10 * seconds, `${ok} tokens from ${seconds * 100 * 40} sources exceed ${max * 5 + max * 10 * seconds}`);
  assert.ok(ok >= max * 5, `the table's room was served (${ok})`);
});

test("the global bucket caps all sources together, with its own burst and refill", () => {
  const { rl, advance } = limiter({ globalRatePerSecond: 20, globalBurst: 8 });
  let ok = 0;
  for (let i = 0; i < 30; i++) if (rl.take(`g${i}`)) ok++;
  assert.equal(ok, 8, "the global burst");
  advance(500);
  ok = 0;
  for (let i = 30; i < 60; i++) if (rl.take(`g${i}`)) ok++;
  assert.equal(ok, 8, "refilled 10 tokens in 500 ms, capped at the global burst of 8");
  advance(100);
  ok = 0;
  for (let i = 60; i < 90; i++) if (rl.take(`g${i}`)) ok++;
  assert.equal(ok, 2, "20/s for 100 ms");
});

test("a take the global bucket refuses costs its source nothing", () => {
  const { rl, advance } = limiter({ ratePerSecond: 0.1, burst: 5, globalRatePerSecond: 1, globalBurst: 6 });
  assert.equal(takes(rl, "o1", 5) + takes(rl, "o2", 1), 6, "the global bucket is empty");
  assert.equal(takes(rl, "a", 10), 0);
  advance(6000); // the global bucket refills; a's own bucket would gain only 0.6
  assert.equal(takes(rl, "a", 10), 5, "a still has its whole burst");
});

test("bad settings throw RangeError", () => {
  assert.throws(() => new RateLimiter({ ratePerSecond: 0, burst: 5, maxSources: 1 }), RangeError);
  assert.throws(() => new RateLimiter({ ratePerSecond: 1, burst: 0.5, maxSources: 1 }), RangeError);
  assert.throws(() => new RateLimiter({ ratePerSecond: 1, burst: 5, maxSources: 0 }), RangeError);
  assert.throws(() => new RateLimiter({ ratePerSecond: 1, burst: 5, maxSources: 1, globalRatePerSecond: -1 }), RangeError);
  assert.throws(() => new RateLimiter({ ratePerSecond: 1, burst: 5, maxSources: 1, globalBurst: Number.NaN }), RangeError);
});
