import type { LatencyHistogram } from "../open_metrics.ts";
import type { Refusal } from "./admission.ts";
import type { ServerStats } from "./server_stats.ts";
import type net from "node:net";
import type { Dispatch } from "./config.ts";
import type { Endpoint, ListenerSet } from "./listener_set.ts";

/** One service process of a group, as `status` lists it (S5). */
export interface WorkerStatus {
  slot: number;
  pid: number | null;
  state: "starting" | "ready" | "draining" | "failed";
  sessions: number;
  inflight: number;
  requests: number;
  /** Connections passed to it (manager) or accepted by it (semaphore) and still open. */
  connections: number;
  restarts: number;
}

/**
 * How a server serves the connections its listeners accept. There are three:
 * multiplexed sessions (S3, session_service.ts), a hosted `node:net` server
 * (S6, raw_host.ts), and a manager's service processes (S5,
 * group/service_group.ts). The server asks this interface instead of
 * testing its mode.
 */
export interface ConnectionService {
  /** Accepted sockets are passed on unread (a manager hands them to a service process). */
  readonly pauseOnConnect: boolean;
  /** A connection the listeners accepted: it is served, even while the server stops accepting. */
  accept(socket: net.Socket): void;
  /** Connections (sessions) open now, and requests running. */
  readonly connections: number;
  readonly inflight: number;
  /** Bytes held for frames in progress and unsent output (`limits.maxBufferedBytes`). */
  bufferedBytes(): number;
  /** `status` counters: the server's own, with what this service adds or counts elsewhere. */
  counters(own: Record<string, number>): Record<string, number>;
  /** Request latency: the server's own, or with its service processes' (S5). */
  latency(own: LatencyHistogram): LatencyHistogram;
  /** Sessions refused by reason: the server's own, or with its service processes'. */
  refusedBy(own: Partial<Record<Refusal, number>>): Partial<Record<Refusal, number>>;
  /** How connections reach service processes, and those processes ("single" and none when this process serves alone). */
  readonly dispatch: Dispatch | "single";
  workers(): WorkerStatus[];
  /** The device no longer has this address: what arrived on it cannot carry traffic any more. */
  addressRemoved(ep: Endpoint): void;
  /** The listeners are open (at start, after a takeover or a rollback, after a rescan). */
  listening(listeners: ListenerSet): Promise<void>;
  /** The listeners are about to close for a handoff: nothing more is accepted here. */
  stopAccepting(): Promise<void>;
  /** Serves what was started (new connections get GOAWAY), closes what is left at the deadline. */
  drain(timeoutMs: number, handedOver?: boolean): Promise<void>;
  /** Peers vouched for (admission.ts), with when: handed to the process an upgrade starts. */
  vouchedPeers?(): [string, number][];
  /** Takes over the vouched peers of the process this one replaces. */
  adoptVouched?(peers: unknown): void;
}

/** The totals of a server and its service, as metrics show them and a new process continues them. */
export function serviceTotals(service: ConnectionService, stats: ServerStats): { counters: Record<string, number>; latency: LatencyHistogram; refusedBy: Partial<Record<Refusal, number>> } {
  return { counters: service.counters(stats.snapshot()), latency: service.latency(stats.latency), refusedBy: service.refusedBy(stats.refusedBy) };
}
