import { LatencyHistogram } from "../open_metrics.ts";
import type { MoveReason } from "./link_lifecycle.ts";

/** Counters a client keeps for its metrics (`client.metrics()`); plain numbers, updated without allocation. */
export class ClientStats {
  requests = 0;
  /** Requests that failed, by error code (`PERILINK_…`, or `other`). */
  readonly errors = new Map<string, number>();
  readonly latency = new LatencyHistogram();
  /** Sessions opened, and attempts to open one that failed (one per address tried). */
  sessionsOpened = 0;
  sessionAttemptsFailed = 0;
  readonly moves: Record<MoveReason, number> = { failover: 0, line: 0, upgrade: 0, goaway: 0 };

  failed(err: unknown): void {
    const raw = (err as { code?: unknown } | null)?.code;
    // Codes come from our error classes; anything else is counted together, so a label set stays small.
    const code = typeof raw === "string" && /^PERILINK_[A-Z_]{1,40}$/.test(raw) ? raw : "other";
    if (this.errors.size < 64 || this.errors.has(code)) this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }
}
