/**
 * A manager and its service processes (S5) talk over the Node IPC channel
 * each service process is started with; connections and listening sockets
 * travel as handles beside the messages:
 *
 *   manager                                service process
 *    │ spawn(program serve …, ipc) ──────────▶ │ load config, identity, app
 *    │ ◀───────────────────────────── ready ── │
 *  manager dispatch:
 *    │ accept; a free slot? ── conn + socket ▶ │ serve it
 *    │ ◀──────────────────────────── closed ── │ (the slot is free again)
 *  semaphore dispatch:
 *    │ the semaphore is free ── lead + fds ──▶ │ accept what is queued
 *    │ ◀─────────────── released {accepted} ── │ close its copies: one holder at a time
 *    │ ◀──────────────────────────── closed ── │
 *  app state (docs/apps.md, "Upgrades"), a new group's service process:
 *    │ ◀──────────────────── state-request ── │ before its app's ready()
 *    │ ── state {text} ──────────────────────▶ │ what its slot had in the old group
 *  an old group's, when the new manager asks for the states:
 *    │ ── state-request ─────────────────────▶ │
 *    │ ◀──────────────────────── state {text} ─ │ what its app put last
 *  always:
 *    │ ◀──────── stats {sessions, inflight} ── │ (every STATS_INTERVAL_MS)
 *    │ ── drain ─────────────────────────────▶ │ GOAWAY, finish what runs, exit 0
 */

/** Set in a service process's environment: its slot number in the group. */
export const WORKER_ENV = "PERILINK_WORKER";

/** Set to "1" in a new group's service process whose slot has an inherited state to ask for (`state-request`). */
export const WORKER_STATE_ENV = "PERILINK_WORKER_STATE";

/** How often a service process reports its counters. */
export const STATS_INTERVAL_MS = 200;

export interface WorkerStats {
  sessions: number;
  inflight: number;
  requests: number;
  connections: number;
  /** The service process's `status` counters and latency buckets (metrics), since it started. */
  counters?: Record<string, number>;
  latency?: unknown;
  refusedBy?: Record<string, number>;
}

export type ManagerToWorker =
  /** A connection (the handle beside it) and the peer key the manager counts it under, to be given back at its close. */
  | { t: "conn"; peer?: string }
  | { t: "lead"; i: number; of: number }
  | { t: "revoke" }
  | { t: "bounce" }
  /** Asks for the state the app put (JSON text), for the next generation's process in this slot. */
  | { t: "state-request" }
  /** The state this slot's process of the old group put, or null (the answer to a `state-request`). */
  | { t: "state"; text: string | null }
  /** `handedOver`: a new generation accepts in this group's place (an upgrade, not a stop). */
  | { t: "drain"; handedOver?: boolean };

export type WorkerToManager =
  | { t: "ready" }
  | { t: "bounced" }
  /** `n` connections closed; `peers`: the peer keys of those the manager passed (it counts them per peer). */
  | { t: "closed"; n: number; peers: string[] }
  | { t: "released"; accepted: number }
  | { t: "state-request" }
  | { t: "state"; text: string | null }
  | ({ t: "stats" } & WorkerStats);
