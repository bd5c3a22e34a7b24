import { LatencyHistogram } from "../open_metrics.ts";
import type { Refusal } from "./admission.ts";

/** The counters of events (not levels): what a new process continues after an upgrade. */
const CARRIED = [
  "sessionsAccepted",
  "sessionsRefused",
  "accessDenied",
  "requests",
  "requestErrors",
  "messages",
  "probes",
  "probesDropped",
  "protocolErrors",
  "sessionsCutOff",
  "sessionsEvicted",
  "requestTimeouts",
  "handoffs",
  "handoffMs",
  "bytesIn",
  "bytesOut",
] as const;

/** Counters a server keeps (R4); `status` reports them. Plain numbers, no allocation to update. */
export class ServerStats {
  sessionsOpen = 0;
  sessionsAccepted = 0;
  sessionsRefused = 0;
  /** Channels refused because the client's key is not trusted for their app. */
  accessDenied = 0;
  channelsOpen = 0;
  requests = 0;
  /** Requests answered with an ERROR frame (handler failures, timeouts, cancels, bodies too large). */
  requestErrors = 0;
  inflight = 0;
  messages = 0;
  probes = 0;
  probesDropped = 0;
  protocolErrors = 0;
  /** Sessions ended because their peer let them make no progress (write timeout, buffer budget). */
  sessionsCutOff = 0;
  /** Idle sessions closed to give their slot to a newcomer at maxSessions. */
  sessionsEvicted = 0;
  /** Requests whose handler outlived `requestTimeoutMs`. */
  requestTimeouts = 0;
  rawConnections = 0;
  /** Upgrades that handed this server's service over to a new process (counted in the new one). */
  handoffs = 0;
  /** Their durations added up: from each new process's start to its accepting. */
  handoffMs = 0;
  /** Bytes read from and written to the sockets of connections that have closed (open ones are added by the service). */
  bytesIn = 0;
  bytesOut = 0;
  /** Request latency, from a request's arrival to its answer (or its body's end). Not in `snapshot()`. */
  readonly latency = new LatencyHistogram();
  /** Sessions refused, by the limit that refused them (their sum is `sessionsRefused`). Not in `snapshot()`. */
  readonly refusedBy: Partial<Record<Refusal, number>> = {};

  refused(why: Refusal): void {
    this.sessionsRefused++;
    this.refusedBy[why] = (this.refusedBy[why] ?? 0) + 1;
  }

  /**
   * A new process continues the totals of the one it took over from (as
   * Envoy's hot restart does): every counter of events, the latency buckets
   * and the refusals by reason, plus one handoff of `handoffMs`. Levels
   * (sessions, channels, requests in flight, raw connections open) are this
   * process's own. Anything that is not a finite count is ignored.
   */
  carryOver(from: unknown, handoffMs: number): void {
    if (typeof from === "object" && from !== null) {
      const old = from as Record<string, unknown>;
      for (const k of CARRIED) {
        const v = old[k];
        if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) this[k] += v;
      }
      this.latency.add(old.latency);
      if (typeof old.refusedBy === "object" && old.refusedBy !== null) {
        for (const [k, v] of Object.entries(old.refusedBy as Record<string, unknown>)) {
          if (k in REFUSALS && typeof v === "number" && Number.isSafeInteger(v) && v >= 0) this.refusedBy[k as Refusal] = (this.refusedBy[k as Refusal] ?? 0) + v;
        }
      }
    }
    this.handoffs++;
    this.handoffMs += Math.max(0, Math.round(handoffMs));
  }

  /**
   * What the old process counted after it handed over (requests it still
   * served, bytes of its draining sessions): its final totals less those it
   * handed over. Nothing is added for a counter that went down or is not a count.
   */
  addGrowth(final: unknown, atHandover: unknown): void {
    if (typeof final !== "object" || final === null || typeof atHandover !== "object" || atHandover === null) return;
    const f = final as Record<string, unknown>;
    const a = atHandover as Record<string, unknown>;
    for (const k of CARRIED) {
      if (k === "handoffs" || k === "handoffMs") continue;
      const d = typeof f[k] === "number" && typeof a[k] === "number" ? (f[k] as number) - (a[k] as number) : 0;
      if (Number.isSafeInteger(d) && d > 0) this[k] += d;
    }
    const fl = f.latency as { counts?: unknown; sumSeconds?: unknown } | undefined;
    const al = a.latency as { counts?: unknown; sumSeconds?: unknown } | undefined;
    if (Array.isArray(fl?.counts) && Array.isArray(al?.counts) && fl.counts.length === al.counts.length && typeof fl.sumSeconds === "number" && typeof al.sumSeconds === "number") {
      const counts = fl.counts.map((c, i) => (c as number) - (al.counts as number[])[i]!);
      if (counts.every((c) => Number.isSafeInteger(c) && c >= 0)) this.latency.add({ counts, sumSeconds: Math.max(0, fl.sumSeconds - al.sumSeconds) });
    }
  }

  /** The plain counters (`status`). */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this)) if (typeof v === "number") out[k] = v;
    return out;
  }

  /** What an old process gives the new one at a handoff (`carryOver`). */
  handoffState(): Record<string, unknown> {
    return { ...this.snapshot(), latency: this.latency.snapshot(), refusedBy: { ...this.refusedBy } };
  }
}

const REFUSALS: Record<Refusal, true> = { maxSessionsPerPeer: true, accessDenied: true, maxBufferedBytes: true, sessionRatePerPeer: true, sessionRateGlobal: true, maxSessions: true };
