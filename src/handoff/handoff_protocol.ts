/**
 * The handoff between an old and a new server process (S4), as it crosses
 * the private control channel (a Node IPC pipe after the inherited sockets):
 *
 *   old                                   new
 *    │ spawn(program, fds 3.., ipc) ───────▶ │ adopt sockets, load config and app
 *    │ ◀──────────────── transfer-request ── │ (ready)
 *    │ stop accepting, release semaphore     │
 *    │ ── transfer-response ───────────────▶ │ take semaphore, start accepting
 *    │ ◀────────────────────── accepting ─── │
 *    │ drain: GOAWAY, finish requests        │
 *    │ ── draining {inflight, sessions} ───▶ │ (listed by `status`)
 *    │ ── drained ─────────────────────────▶ │
 *    ╳ exit                                  │ (pipe EOF: old is gone)
 *
 * Every wait has a timeout; see upgrader.ts (old) and takeover.ts (new).
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
/** How long the new process may wait for each step, in ms. */
export const HANDOFF_TIMEOUT_ENV = "PERILINK_HANDOFF_TIMEOUT_MS";

/** Default time the new program has to become ready. */
export const DEFAULT_UPGRADE_TIMEOUT_MS = 30_000;

import type { DrainingGeneration } from "../server/server_handoff.ts";

export type { DrainingGeneration };

export type NewToOld = { t: "transfer-request" } | { t: "accepting"; pid: number; generation: number };

export type OldToNew =
  | { t: "transfer-response"; vouched?: [string, number][]; counters?: Record<string, unknown> }
  | { t: "draining"; report: DrainingGeneration; older: DrainingGeneration[] }
  /** `counters`: the old process's totals once drained, so the new one adds what it counted after the handover. */
  | { t: "drained"; generation: number; counters?: Record<string, unknown> };

export function isMessage<T extends { t: string }>(m: unknown, t: T["t"]): m is T {
  return typeof m === "object" && m !== null && (m as { t?: unknown }).t === t;
}
