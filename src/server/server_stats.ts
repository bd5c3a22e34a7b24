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
