/**
 * The handoff between an old and a new server process (S4), as it crosses
 * the private control channel (a Node IPC pipe after the inherited sockets):
 *
 *   old                                   new
 *    │ spawn(program, fds 3.., ipc) ───────▶ │ load config and app
 *    │ ◀─────────────── app-state-request ── │ (if PERILINK_APP_STATE says it may ask)
 *    │ ── app-state {state} ───────────────▶ │ the app's ready(); then adopt sockets
 *    │ ◀──────────────── transfer-request ── │ (ready; `park`: it echoes park)
 *    │ ── park + TCP handle ───────────────▶ │ (with probation: once per listener,
 *    │ ◀──────────────── parked + handle ─── │  a copy this process keeps unwatched)
 *    │ stop accepting, release semaphore     │
 *    │ ── transfer-response ───────────────▶ │ take semaphore, start accepting
 *    │ ◀────────────────────── accepting ─── │
 *    │ probation: if it dies now, accept     │
 *    │ again on the kept sockets             │
 *    │ drain: GOAWAY, finish requests        │
 *    │ ── draining {inflight, sessions} ───▶ │ (listed by `status`)
 *    │ ── drained ─────────────────────────▶ │
 *    ╳ exit                                  │ (pipe EOF: old is gone)
 *
 * A new process that cannot start (its app's ready() failed) says why
 * (start-failed) before it exits. Every wait has a timeout; see
 * upgrader.ts (old) and takeover.ts (new).
 */

/**
 * Set in the new process's environment: a perilink parent waits on the IPC
 * channel. Its value says how the ports pass: `inherit` (open sockets from
 * fd 3) or `reuseport` (bind them again alongside the old process).
 */
export const HANDOFF_ENV = "PERILINK_HANDOFF";
export type HandoffMode = "inherit" | "reuseport";
/** The new process's generation number. */
export const GENERATION_ENV = "PERILINK_GENERATION";
/**
 * JSON `{ "<listen entry>": port }` for entries written with port 0: the new
 * process keeps the ports the kernel chose for the old one.
 */
export const PORTS_ENV = "PERILINK_PORTS";
/**
 * The old group's service process ids, comma-separated (an upgrade with
 * `--workers`): they drain while the new group starts, and a rolling start
 * (`limits.upgradeSurge`) adds a service process of its own as each exits.
 */
export const DRAINING_PIDS_ENV = "PERILINK_DRAINING_PIDS";
/** How long the new process may wait for each step, in ms. */
export const HANDOFF_TIMEOUT_ENV = "PERILINK_HANDOFF_TIMEOUT_MS";

/** Set to "1" by a parent that answers `app-state-request` (an older perilink does not). */
export const APP_STATE_ENV = "PERILINK_APP_STATE";
/**
 * Descriptors an app put for the next generation (docs/apps.md) follow the
 * listening sockets from fd 3, named `app@NAME` in `LISTEN_FDNAMES`.
 */
export const APP_FD_PREFIX = "app@";

/** Default time the new program has to become ready. */
export const DEFAULT_UPGRADE_TIMEOUT_MS = 30_000;

import type { DrainingGeneration } from "../server/server_handoff.ts";

export type { DrainingGeneration };

export type NewToOld =
  /** `park`: this process sends back the handle of every `park` message (a version that does not, says nothing). */
  | { t: "transfer-request"; park?: boolean }
  /** With the handle `park` came with. */
  | { t: "parked" }
  | { t: "accepting"; pid: number; generation: number }
  | { t: "app-state-request" }
  /** The new process cannot start (its app's ready() failed, a configuration error): why, before it exits. */
  | { t: "start-failed"; why: string; code?: string };

/** What an old generation hands its successor's app as state (`app-state`). */
export interface AppStates {
  state: string | null;
  states?: (string | null)[];
}

export type OldToNew =
  /**
   * The app's state (JSON text, docs/apps.md), or null when it put none; from
   * a group (`--workers`), `states` has each service process's by slot and
   * `state` is slot 0's (a successor of one process takes that).
   */
  | { t: "app-state"; state: string | null; states?: (string | null)[] }
  /** With a listening TCP socket's bare handle, to be sent back (`parked`): the sender keeps a copy nothing watches. */
  | { t: "park" }
  | { t: "transfer-response"; vouched?: [string, number][]; counters?: Record<string, unknown> }
  | { t: "draining"; report: DrainingGeneration; older: DrainingGeneration[] }
  /** `counters`: the old process's totals once drained, so the new one adds what it counted after the handover. */
  | { t: "drained"; generation: number; counters?: Record<string, unknown> };

export function isMessage<T extends { t: string }>(m: unknown, t: T["t"]): m is T {
  return typeof m === "object" && m !== null && (m as { t?: unknown }).t === t;
}
