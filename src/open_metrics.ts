/**
 * OpenMetrics text exposition (the format Prometheus scrapes, OpenMetrics 1.0):
 * families written one after another, each with its TYPE and HELP, then its
 * samples; `# EOF` ends the text. Counters' samples end in `_total`.
 * Server and client render their own counters with it (docs/operations.md, "Metrics").
 */

/** The Content-Type of the text `MetricsText.text()` returns. */
export const OPEN_METRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8";

export type Labels = Record<string, string | number>;

/** Upper bounds, in seconds, of the request-latency buckets (the last, +Inf, is implied). */
export const LATENCY_BOUNDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;

/**
 * Request latencies by bucket: one increment and one addition per
 * observation, no allocation. Counts are per bucket (not cumulative) so a
 * new process can add an old one's snapshot to its own.
 */
export class LatencyHistogram {
  readonly counts: number[] = new Array<number>(LATENCY_BOUNDS.length + 1).fill(0);
  sumSeconds = 0;

  observe(ms: number): void {
    const s = ms / 1000;
    let i = 0;
    while (i < LATENCY_BOUNDS.length && s > LATENCY_BOUNDS[i]!) i++;
    this.counts[i]!++;
    this.sumSeconds += s;
  }

  get count(): number {
    let n = 0;
    for (const c of this.counts) n += c;
    return n;
  }

  snapshot(): { counts: number[]; sumSeconds: number } {
    return { counts: [...this.counts], sumSeconds: this.sumSeconds };
  }

  /** Adds a snapshot another process took; anything that is not one is ignored. */
  add(from: unknown): void {
    if (typeof from !== "object" || from === null) return;
    const { counts, sumSeconds } = from as { counts?: unknown; sumSeconds?: unknown };
    if (!Array.isArray(counts) || counts.length !== this.counts.length || typeof sumSeconds !== "number" || !Number.isFinite(sumSeconds) || sumSeconds < 0) return;
    if (!counts.every((c) => Number.isSafeInteger(c) && (c as number) >= 0)) return;
    counts.forEach((c, i) => (this.counts[i]! += c as number));
    this.sumSeconds += sumSeconds;
  }
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labelText(labels: Labels | undefined, extra?: string): string {
  const parts: string[] = [];
  if (labels) for (const [k, v] of Object.entries(labels)) parts.push(`${k}="${escapeLabel(String(v))}"`);
  if (extra) parts.push(extra);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** Builds one exposition; each family name may be used once. */
export class MetricsText {
  #lines: string[] = [];
  #names = new Set<string>();

  #family(name: string, type: string, help: string, unit?: string): void {
    if (!NAME.test(name) || this.#names.has(name)) throw new TypeError(`metric family ${name} is malformed or used twice`);
    this.#names.add(name);
    this.#lines.push(`# TYPE ${name} ${type}`);
    if (unit) this.#lines.push(`# UNIT ${name} ${unit}`);
    this.#lines.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
  }

  /** A counter: one sample per label set, `<name>_total`. */
  counter(name: string, help: string, samples: number | [Labels, number][]): this {
    this.#family(name, "counter", help);
    for (const [labels, v] of typeof samples === "number" ? [[undefined, samples] as const] : samples) this.#lines.push(`${name}_total${labelText(labels)} ${num(v)}`);
    return this;
  }

  gauge(name: string, help: string, samples: number | [Labels, number][], unit?: string): this {
    this.#family(name, "gauge", help, unit);
    for (const [labels, v] of typeof samples === "number" ? [[undefined, samples] as const] : samples) this.#lines.push(`${name}${labelText(labels)} ${num(v)}`);
    return this;
  }

  /** An info family: one `<name>_info` sample of value 1 carrying `labels`. */
  info(name: string, help: string, labels: Labels): this {
    this.#family(name, "info", help);
    this.#lines.push(`${name}_info${labelText(labels)} 1`);
    return this;
  }

  /** A summary with only its count and sum (no quantiles). */
  summary(name: string, help: string, count: number, sum: number, unit?: string): this {
    this.#family(name, "summary", help, unit);
    this.#lines.push(`${name}_count ${num(count)}`, `${name}_sum ${num(sum)}`);
    return this;
  }

  histogram(name: string, help: string, h: LatencyHistogram, unit = "seconds"): this {
    this.#family(name, "histogram", help, unit);
    let cumulative = 0;
    LATENCY_BOUNDS.forEach((bound, i) => {
      cumulative += h.counts[i]!;
      this.#lines.push(`${name}_bucket${labelText(undefined, `le="${bound}"`)} ${cumulative}`);
    });
    cumulative += h.counts[LATENCY_BOUNDS.length]!;
    this.#lines.push(`${name}_bucket{le="+Inf"} ${cumulative}`, `${name}_count ${cumulative}`, `${name}_sum ${num(h.sumSeconds)}`);
    return this;
  }

  text(): string {
    return `${this.#lines.join("\n")}\n# EOF\n`;
  }
}
