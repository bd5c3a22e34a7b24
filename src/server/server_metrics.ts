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
  t.gauge("perilink_generation", "Generation of the process serving now (1 + upgrades since the first start)", st.generation);
  t.gauge("perilink_accepting", "1 while this process accepts connections", st.accepting ? 1 : 0);
  t.gauge("perilink_draining_generations", "Older generations still finishing their requests after an upgrade", st.draining.length);
  t.gauge("perilink_uptime_seconds", "Time since this process started", st.uptimeMs / 1000, "seconds");
  t.gauge("perilink_listeners", "Addresses the port group listens on", st.listeners.length / 2);
  t.gauge("perilink_sessions", "Sessions open (raw mode: connections open)", st.sessions);
  t.gauge("perilink_sessions_limit", "limits.maxSessions", m.limits.maxSessions);
  t.gauge("perilink_channels", "Channels open", c("channelsOpen"));
  t.gauge("perilink_requests_inflight", "Requests whose answer has not gone out", st.inflight);
  t.gauge("perilink_buffered_bytes", "Bytes held for frames in progress and unsent output", st.bufferedBytes, "bytes");
  t.gauge("perilink_buffered_limit_bytes", "limits.maxBufferedBytes", m.limits.maxBufferedBytes, "bytes");
  t.counter("perilink_sessions_accepted", "Sessions (raw mode: connections) accepted", c("sessionsAccepted"));
  t.counter(
    "perilink_sessions_refused",
    "Connections refused at admission, by the limit that refused them",
    REFUSAL_REASONS.map((r) => [{ reason: r }, m.refusedBy[r] ?? 0]),
  );
  t.counter("perilink_sessions_closed_by_server", "Sessions the server ended, by why", [
    [{ reason: "cut_off" }, c("sessionsCutOff")],
    [{ reason: "evicted" }, c("sessionsEvicted")],
    [{ reason: "protocol_error" }, c("protocolErrors")],
  ]);
  t.counter("perilink_channels_denied", "Channel opens refused: the client's key is not trusted for the app", c("accessDenied"));
  t.counter("perilink_requests", "Requests received (raw mode: HTTP requests)", c("requests"));
  t.counter("perilink_request_errors", "Requests answered with an error (raw mode: 5xx or cut short)", c("requestErrors"));
  t.counter("perilink_request_timeouts", "Requests whose handler outlived limits.requestTimeoutMs", c("requestTimeouts"));
  t.counter("perilink_messages", "One-way messages received", c("messages"));
  t.histogram("perilink_request_duration_seconds", "Request latency, from arrival to answer (a streamed answer: to its end)", m.latency);
  t.counter("perilink_received_bytes", "Bytes read from clients' connections", c("bytesIn"));
  t.counter("perilink_sent_bytes", "Bytes written to clients' connections", c("bytesOut"));
  t.counter("perilink_probes", "Identify probes (UDP), by outcome", [
    [{ outcome: "answered" }, c("probes")],
    [{ outcome: "dropped" }, c("probesDropped")],
  ]);
  t.summary("perilink_handoff_duration_seconds", "Upgrades that handed the service to a new process, and how long each new process took to accept", c("handoffs"), c("handoffMs") / 1000, "seconds");
  t.gauge("perilink_upgrade_in_progress", "1 while an upgrade runs", st.upgrade ? 1 : 0);
  if (st.lastUpgrade) t.gauge("perilink_last_upgrade_ok", "1 if the last upgrade this process saw succeeded (or started it), 0 if it failed", st.lastUpgrade.outcome === "failed" ? 0 : 1);
  if (st.dispatch !== "single") {
    t.gauge("perilink_service_processes", "Service processes, by state", (["starting", "ready", "draining", "failed"] as const).map((s) => [{ state: s }, st.workers.filter((w) => w.state === s).length]));
    t.counter("perilink_connections_passed", "Connections the manager passed to service processes", c("connectionsPassed"));
    t.counter("perilink_connections_refused", "Connections the manager refused (no service process free)", c("connectionsRefused"));
  }
  t.gauge("perilink_process_resident_memory_bytes", "Resident set size of this process", m.memory.rssBytes, "bytes");
  t.gauge("perilink_process_heap_used_bytes", "JavaScript heap in use", m.memory.heapUsedBytes, "bytes");
  t.gauge("perilink_process_heap_limit_bytes", "JavaScript heap limit", m.memory.heapLimitBytes, "bytes");
  return t.text();
}
