import { percentile } from "./stats.ts";

export interface LoadOptions {
  /** Requests kept in flight. */
  concurrency: number;
  /** Unmeasured run before the measurement. */
  warmupMs: number;
  /** Measurement length; it also ends after `maxRequests` responses. */
  durationMs: number;
  maxRequests: number;
  /** Called once, when the measurement starts. */
  onMeasureStart?: () => void;
  /** Called once, when the measurement ends (before the results are computed). */
  onMeasureEnd?: () => void;
}

export interface LoadResult {
  requests: number;
  elapsedMs: number;
  reqPerSec: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

/**
 * Keeps `concurrency` calls of `send` in flight: a warm-up, then a measured
 * window that ends after `durationMs` or `maxRequests` responses, whichever
 * comes first. Latency is from the call to the settled promise. Rejects if
 * `send` rejects or the whole run overruns its time by 15 s.
 */
export async function runLoad(send: () => Promise<unknown>, o: LoadOptions): Promise<LoadResult> {
  const latencies = new Float64Array(o.maxRequests);
  const warmupEnd = performance.now() + o.warmupMs;
  let warmupCount = 0;
  let count = 0;
  let measuring = false;
  let done = false;
  let start = 0;
  let end = 0;
  let measureEnd = Infinity;

  const worker = async (): Promise<void> => {
    while (!done) {
      const t0 = performance.now();
      await send();
      const t1 = performance.now();
      if (done) return;
      if (measuring) {
        latencies[count++] = t1 - t0;
        if (count >= o.maxRequests || t1 >= measureEnd) {
          done = true;
          end = t1;
          o.onMeasureEnd?.();
        }
      } else if (t1 >= warmupEnd || ++warmupCount >= o.maxRequests) {
        measuring = true;
        start = t1;
        measureEnd = t1 + o.durationMs;
        o.onMeasureStart?.();
      }
    }
  };

  let watchdog: ReturnType<typeof setTimeout> | undefined;
  const overrun = new Promise<never>((_, reject) => {
    watchdog = setTimeout(() => {
      done = true;
      reject(new Error(`load did not finish within ${o.warmupMs + o.durationMs + 15_000} ms`));
    }, o.warmupMs + o.durationMs + 15_000);
  });
  try {
    await Promise.race([Promise.all(Array.from({ length: o.concurrency }, worker)), overrun]);
  } finally {
    clearTimeout(watchdog);
    done = true;
  }

  const sorted = latencies.subarray(0, count).sort();
  const elapsedMs = end - start;
  return {
    requests: count,
    elapsedMs,
    reqPerSec: (count * 1000) / elapsedMs,
    p50Us: percentile(sorted, 50) * 1000,
    p99Us: percentile(sorted, 99) * 1000,
    maxUs: (sorted[count - 1] ?? NaN) * 1000,
  };
}
