import { MetricsText, type LatencyHistogram } from "../open_metrics.ts";
import type { MemoryFigures } from "../runtime/memory_figures.ts";
import type { Refusal } from "./admission.ts";
import type { ServerLimits } from "./limits.ts";
import type { ServerStatus } from "./server_status.ts";

/** What a server's metrics are made of: its status, this process's memory, and what status leaves out. */
export interface ServerMetricsInput {
  status: ServerStatus;
  memory: MemoryFigures;
  latency: LatencyHistogram;
  refusedBy: Partial<Record<Refusal, number>>;
  limits: ServerLimits;
}

const REFUSAL_REASONS: Refusal[] = ["maxSessions", "maxSessionsPerPeer", "maxBufferedBytes", "sessionRatePerPeer", "sessionRateGlobal", "accessDenied"];

/**
 * The server's metrics as OpenMetrics text (docs/operations.md, "Metrics"):
 * `perilink metrics`, and `/metrics` on `metrics.listen`. Counters continue
 * across upgrades (server_stats.ts), so a scrape after one sees no reset.
 */
export function renderServerMetrics(m: ServerMetricsInput): string {
  const st = m.status;
  const c = (k: string): number => st.counters[k] ?? 0;
  const t = new MetricsText();
  t.info("perilink_server", "The running program and server", { version: st.version, server_id: st.serverId, key: st.keyFingerprint, target: st.target, runtime: st.runtime, app: st.app, mode: st.mode });
  t.gauge("perilink_generation", "Generation serving now", st.generation);
  t.gauge("perilink_accepting", "1 while accepting", st.accepting ? 1 : 0);
  t.gauge("perilink_draining_generations", "Older generations still draining", st.draining.length);
  t.gauge("perilink_uptime_seconds", "Process uptime", st.uptimeMs / 1000, "seconds");
  t.gauge("perilink_listeners", "Addresses listened on", st.listeners.length / 2);
  t.gauge("perilink_sessions", "Sessions (raw mode: connections) open", st.sessions);
  t.gauge("perilink_sessions_limit", "limits.maxSessions", m.limits.maxSessions);
  t.gauge("perilink_channels", "Channels open", c("channelsOpen"));
  t.gauge("perilink_requests_inflight", "Requests in flight", st.inflight);
  t.gauge("perilink_buffered_bytes", "Bytes buffered", st.bufferedBytes, "bytes");
  t.gauge("perilink_buffered_limit_bytes", "limits.maxBufferedBytes", m.limits.maxBufferedBytes, "bytes");
  t.counter("perilink_sessions_accepted", "Sessions accepted", c("sessionsAccepted"));
  t.counter(
    "perilink_sessions_refused",
    "Sessions refused, by limit",
    REFUSAL_REASONS.map((r) => [{ reason: r }, m.refusedBy[r] ?? 0]),
  );
  t.counter("perilink_sessions_closed_by_server", "Sessions ended by the server, by reason", [
    [{ reason: "cut_off" }, c("sessionsCutOff")],
    [{ reason: "evicted" }, c("sessionsEvicted")],
    [{ reason: "protocol_error" }, c("protocolErrors")],
  ]);
  t.counter("perilink_channels_denied", "Channels refused: key not trusted", c("accessDenied"));
  t.counter("perilink_requests", "Requests received", c("requests"));
  t.counter("perilink_request_errors", "Requests answered with an error", c("requestErrors"));
  t.counter("perilink_request_timeouts", "Requests timed out", c("requestTimeouts"));
  t.counter("perilink_messages", "Messages received", c("messages"));
  t.histogram("perilink_request_duration_seconds", "Request latency", m.latency);
  t.counter("perilink_received_bytes", "Bytes received", c("bytesIn"));
  t.counter("perilink_sent_bytes", "Bytes sent", c("bytesOut"));
  t.counter("perilink_probes", "Identify probes, by outcome", [
    [{ outcome: "answered" }, c("probes")],
    [{ outcome: "dropped" }, c("probesDropped")],
  ]);
  t.summary("perilink_handoff_duration_seconds", "Handoffs to a new process, and their time to accept", c("handoffs"), c("handoffMs") / 1000, "seconds");
  t.gauge("perilink_upgrade_in_progress", "1 while upgrading", st.upgrade ? 1 : 0);
  if (st.lastUpgrade) t.gauge("perilink_last_upgrade_ok", "0 if the last upgrade failed", st.lastUpgrade.outcome === "failed" ? 0 : 1);
  if (st.dispatch !== "single") {
    t.gauge("perilink_service_processes", "Service processes, by state", (["starting", "ready", "draining", "failed"] as const).map((s) => [{ state: s }, st.workers.filter((w) => w.state === s).length]));
    t.counter("perilink_connections_passed", "Connections passed to service processes", c("connectionsPassed"));
    t.counter("perilink_connections_refused", "Connections refused by the manager", c("connectionsRefused"));
  }
  t.gauge("perilink_process_resident_memory_bytes", "Resident memory", m.memory.rssBytes, "bytes");
  t.gauge("perilink_process_heap_used_bytes", "Heap in use", m.memory.heapUsedBytes, "bytes");
  t.gauge("perilink_process_heap_limit_bytes", "Heap limit", m.memory.heapLimitBytes, "bytes");
  return t.text();
}
