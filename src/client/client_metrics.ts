import { MetricsText } from "../open_metrics.ts";
import type { ClientStats } from "./client_stats.ts";

export interface ClientMetricsInput {
  stats: ClientStats;
  servers: number;
  links: number;
  sockets: number;
  maxSockets: number;
  addresses: number;
  line: { measures: number; probesSent: number; switches: number };
}

/** The client's metrics as OpenMetrics text (`client.metrics()`; docs/client.md, "Metrics"). */
export function renderClientMetrics(m: ClientMetricsInput): string {
  const s = m.stats;
  return new MetricsText()
    .gauge("perilink_client_servers", "Servers in the session table", m.servers)
    .gauge("perilink_client_links", "Links open", m.links)
    .gauge("perilink_client_sockets", "Sockets held", m.sockets)
    .gauge("perilink_client_sockets_limit", "maxSessions", m.maxSockets)
    .gauge("perilink_client_addresses", "Address list rows", m.addresses)
    .counter("perilink_client_sessions_opened", "Sessions opened", s.sessionsOpened)
    .counter("perilink_client_session_attempts_failed", "Session attempts failed", s.sessionAttemptsFailed)
    .counter("perilink_client_requests", "Requests", s.requests)
    .counter("perilink_client_request_errors", "Requests failed, by code", [...s.errors].map(([code, n]) => [{ code }, n]))
    .histogram("perilink_client_request_duration_seconds", "Request latency", s.latency)
    .counter("perilink_client_link_moves", "Link moves, by reason", Object.entries(s.moves).map(([reason, n]) => [{ reason }, n]))
    .counter("perilink_client_line_measures", "Line measures", m.line.measures)
    .counter("perilink_client_line_probes", "Line probe datagrams", m.line.probesSent)
    .counter("perilink_client_line_switches", "Moves to a better line", m.line.switches)
    .text();
}
