/**
 * How good a line is, as the user weighs it (C8): each measure is mapped to
 * 0..1 and the score is their weighted mean, 0..100.
 *
 *   bandwidth  log10(Mb/s) / 4, within 0..1 (1 Mb/s → 0, 100 Mb/s → 0.5, 10 Gb/s → 1)
 *   hops       1 / (1 + routers)                 (direct → 1, one router → 0.5)
 *   mtu        (pathMtu − 1280) / (1500 − 1280), within 0..1
 *   rtt        1 / (1 + rttMs / 5)               (5 ms → 0.5)
 *
 * A measure that is not known counts 0.5. An unreachable line has no score.
 */
export interface LinePreference {
  bandwidth: number;
  hops: number;
  mtu: number;
  rtt: number;
}

/** Every measure counts the same. */
export const DEFAULT_LINE_PREFERENCE: Readonly<LinePreference> = Object.freeze({ bandwidth: 1, hops: 1, mtu: 1, rtt: 1 });

export interface LineFigures {
  bandwidthMbps: number | null;
  routers: number | null;
  pathMtu: number | null;
  rttMs: number | null;
}

const clamp01 = (x: number): number => (x < 0 ? 0 : x > 1 ? 1 : x);

export function lineScore(m: LineFigures, p: LinePreference): number {
  const total = p.bandwidth + p.hops + p.mtu + p.rtt;
  const bw = m.bandwidthMbps === null ? 0.5 : clamp01(Math.log10(Math.max(1, m.bandwidthMbps)) / 4);
  const hops = m.routers === null ? 0.5 : 1 / (1 + m.routers);
  const mtu = m.pathMtu === null ? 0.5 : clamp01((m.pathMtu - 1280) / (1500 - 1280));
  const rtt = m.rttMs === null ? 0.5 : 1 / (1 + m.rttMs / 5);
  const s = (p.bandwidth * bw + p.hops * hops + p.mtu * mtu + p.rtt * rtt) / total;
  return Math.round(s * 1000) / 10;
}

const KEYS = ["bandwidth", "hops", "mtu", "rtt"] as const;

/** Checks a preference object: known keys, finite weights ≥ 0, not all 0; missing weights are 0 when some are given. */
export function normalizePreference(input: Partial<LinePreference> | undefined): LinePreference {
  if (input === undefined) return { ...DEFAULT_LINE_PREFERENCE };
  if (typeof input !== "object" || input === null) throw new TypeError("linePreference must be an object of weights");
  for (const k of Object.keys(input)) {
    if (!(KEYS as readonly string[]).includes(k)) throw new TypeError(`linePreference: unknown measure "${k}"; use ${KEYS.join(", ")}`);
  }
  const p: LinePreference = { bandwidth: 0, hops: 0, mtu: 0, rtt: 0 };
  for (const k of KEYS) {
    const w = input[k] ?? 0;
    if (typeof w !== "number" || !Number.isFinite(w) || w < 0) throw new RangeError(`linePreference.${k} must be a finite weight ≥ 0`);
    p[k] = w;
  }
  if (p.bandwidth + p.hops + p.mtu + p.rtt === 0) throw new RangeError("linePreference: at least one weight must be above 0");
  return p;
}

/** Parses `--prefer bandwidth=3,hops=1` (unnamed measures weigh 0). */
export function parseLinePreference(text: string): LinePreference {
  const input: Record<string, number> = {};
  for (const part of text.split(",")) {
    const m = /^\s*(\w+)\s*=\s*([\d.]+)\s*$/.exec(part);
    if (!m) throw new RangeError(`Cannot read --prefer "${text}": write weights as bandwidth=1,hops=1,mtu=1,rtt=1`);
    input[m[1]!] = Number(m[2]);
  }
  return normalizePreference(input as Partial<LinePreference>);
}
