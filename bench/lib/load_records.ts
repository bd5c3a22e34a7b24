import { readFileSync } from "node:fs";
import { percentile } from "./stats.ts";

/** Outcome codes of a recorded request (the load child's file format). */
export const OUTCOME_OK = 0;
export const OUTCOME_FAILED = 1;
export const OUTCOME_NON_2XX = 2;

/**
 * Every request a load process recorded (children/handoff_load.ts): four
 * columns written one after the other, start (epoch ms, f64), latency (ms,
 * f64), answering pid (i32), outcome (u8).
 */
export interface LoadRecords {
  count: number;
  start: Float64Array;
  latency: Float64Array;
  pid: Int32Array;
  outcome: Uint8Array;
}

export function readLoadRecords(file: string, count: number): LoadRecords {
  const buf = readFileSync(file);
  // Copied into a fresh buffer: the typed views need an aligned offset.
  const copy = new Uint8Array(buf.byteLength);
  copy.set(buf);
  const ab = copy.buffer;
  return {
    count,
    start: new Float64Array(ab, 0, count),
    latency: new Float64Array(ab, count * 8, count),
    pid: new Int32Array(ab, count * 16, count),
    outcome: new Uint8Array(ab, count * 20, count),
  };
}

export interface RecordStats {
  requests: number;
  failed: number;
  non2xx: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Latency percentiles (answered requests only) and failure counts of the requests `pick(start, end)` selects. */
export function recordStats(r: LoadRecords, pick: (start: number, end: number) => boolean): RecordStats {
  const lat: number[] = [];
  let failed = 0;
  let non2xx = 0;
  for (let i = 0; i < r.count; i++) {
    const s = r.start[i]!;
    if (!pick(s, s + r.latency[i]!)) continue;
    const o = r.outcome[i]!;
    if (o === OUTCOME_OK) lat.push(r.latency[i]!);
    else if (o === OUTCOME_FAILED) failed++;
    else non2xx++;
  }
  const sorted = Float64Array.from(lat).sort();
  return {
    requests: lat.length + failed + non2xx,
    failed,
    non2xx,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length > 0 ? sorted[sorted.length - 1]! : NaN,
  };
}
