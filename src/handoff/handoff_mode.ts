import { promises as fs } from "node:fs";
import type { Logger } from "../logger.ts";
import { detectRuntime, type RuntimeInfo } from "../runtime/runtime.ts";
import type { HandoffMode } from "./handoff_protocol.ts";

/**
 * How the ports pass from one process to the next (S4), decided here and
 * nowhere else. `inherit` (Node.js): the listening sockets are handed to the
 * new process open (fd 3…) and accept rights pass through the accept
 * semaphore, since both processes hold the same sockets. `reuseport` (Deno,
 * which cannot adopt a socket's descriptor): the new process binds the same
 * ports again with SO_REUSEPORT while the old one still listens; each has
 * its own sockets, so there is no semaphore, and the kernel moves queued
 * connections only with `net.ipv4.tcp_migrate_req=1`.
 */
export interface HandoffPlan {
  /** How this process hands the ports to its successor. */
  readonly mode: HandoffMode;
  /** At an upgrade, the listening sockets are passed to the new process. */
  readonly passSockets: boolean;
  /** This process's listening sockets come open from the old process (not from systemd). */
  readonly adoptInherited: boolean;
  /** Accept rights pass through the accept semaphore. */
  readonly semaphore: boolean;
  /** Bind TCP listeners with SO_REUSEPORT, so that a new process can bind them alongside. */
  readonly reusePort: boolean;
  /** Bind the UDP responders only once the old process has let go of them (they cannot be shared). */
  readonly deferUdp: boolean;
}

/** The plan for a process started by an upgrade in `startedBy` mode (null: a fresh start). */
export function handoffPlan(startedBy: HandoffMode | null = null, runtime: RuntimeInfo = detectRuntime()): HandoffPlan {
  const mode = runtime.handoff;
  return {
    mode,
    passSockets: mode === "inherit",
    adoptInherited: startedBy === "inherit",
    semaphore: mode === "inherit",
    reusePort: mode === "reuseport",
    deferUdp: startedBy === "reuseport",
  };
}

/** With `reuseport`, says so when connections in the old process's accept queue would be reset at an upgrade. */
export async function warnWithoutMigration(log: Logger): Promise<void> {
  const v = await fs.readFile("/proc/sys/net/ipv4/tcp_migrate_req", "utf8").catch(() => "");
  if (v.trim() !== "1") {
    log.warn("upgrade_without_migration", {
      note: "net.ipv4.tcp_migrate_req is not 1: connections in this process's accept queue when it stops may be reset; run sysctl -w net.ipv4.tcp_migrate_req=1",
    });
  }
}
