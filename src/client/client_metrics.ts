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
    .gauge("perilink_client_servers", "Servers the session table holds", m.servers)
    .gauge("perilink_client_links", "Links open (logical connections of applications)", m.links)
    .gauge("perilink_client_sockets", "Sockets held (sessions, active and draining)", m.sockets)
    .gauge("perilink_client_sockets_limit", "maxSessions", m.maxSockets)
    .gauge("perilink_client_addresses", "Rows of the address list", m.addresses)
    .counter("perilink_client_sessions_opened", "Sessions opened", s.sessionsOpened)
    .counter("perilink_client_session_attempts_failed", "Attempts to open a session that failed (one per address tried)", s.sessionAttemptsFailed)
    .counter("perilink_client_requests", "Requests sent through links", s.requests)
    .counter("perilink_client_request_errors", "Requests that failed, by error code", [...s.errors].map(([code, n]) => [{ code }, n]))
    .histogram("perilink_client_request_duration_seconds", "Request latency as the application saw it, moves included", s.latency)
    .counter("perilink_client_link_moves", "Links that moved to another session, by why", Object.entries(s.moves).map(([reason, n]) => [{ reason }, n]))
    .counter("perilink_client_line_measures", "Line measures taken (C8)", m.line.measures)
    .counter("perilink_client_line_probes", "Datagrams the line measures sent", m.line.probesSent)
    .counter("perilink_client_line_switches", "Sessions moved to a better line", m.line.switches)
    .text();
}
