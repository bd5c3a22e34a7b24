import type net from "node:net";
import { checkMs } from "../duration.ts";
import type { Logger } from "../logger.ts";
import type { ParkedSocket } from "./listener_sockets.ts";
import type { ServerEvents } from "./server_events.ts";

/**
 * What the server offers to, and needs from, the upgrade machinery above it
 * (src/handoff/, wired by src/serve/). The server owns these interfaces and
 * knows nothing of semaphores, IPC or new processes: an embedded server has
 * none of them and cannot upgrade.
 */

/** How long a process waits for the accept semaphore (held only by a process of this state directory). */
export const SEMAPHORE_START_TIMEOUT_MS = 2000;

/** An older generation that handed over to this process and is still draining (listed by `status`). */
export interface DrainingGeneration {
  generation: number;
  pid: number;
  inflight: number;
  sessions: number;
}

export interface UpgradeRequest {
  /** The new program; default: the script now running (a new bundle dropped in place is picked up). */
  program?: string;
  /** A new app module for the new program. */
  app?: string;
  /** How long the new program may take to become ready and to take over. */
  timeoutMs?: number;
}

export interface UpgradeResult {
  generation: number;
  pid: number;
  previousPid: number;
  ms: number;
}

/** Exclusive accept rights on the port group (the accept semaphore, S4). */
export interface AcceptGate {
  acquire(timeoutMs: number): Promise<void>;
  release(): void;
}

/** Replaces this process with a new program version (the upgrader, S4). */
export interface UpgradeDriver {
  upgrade(req: UpgradeRequest): Promise<UpgradeResult>;
  /** The upgrade under way, if any. */
  readonly inProgress: { pid: number | undefined; since: number } | null;
  /** True once a new process accepts in this one's place. */
  readonly handedOver: boolean;
  /** Resolves once this process handed over and drained; rejects when a rollback could not bind the ports again. */
  readonly done: Promise<void>;
  /** Stops an upgrade that has not handed over yet (its process is killed). */
  cancel(why: string): Promise<void>;
}

/** The new side of an upgrade: takes the accept rights from the old process (takeover.ts). */
export interface StartupTakeover {
  /** Waits for the old process to stop accepting, takes `gate`, runs `activate`, tells the old process. */
  run(gate: AcceptGate | null, activate: () => Promise<void>, generation: number): Promise<void>;
  /** Older generations still draining. */
  draining(): DrainingGeneration[];
  /** The peers the old process vouched for (its transfer response), once run() has it. */
  vouched(): unknown;
  /** The old process's counters when it handed over, once run() has them. */
  counters(): unknown;
  /** The old process's totals once it drained, with those it handed over (what it counted since is the difference). */
  onDrainedCounters?(listener: (final: unknown, atHandover: unknown) => void): void;
  /** True once the old process is past its probation (it reports its drain, or is gone): until then it may still take the ports back. */
  predecessorSettled?(): boolean;
}

/** What the upgrade machinery drives in the server it replaces (PerilinkServer implements it). */
export interface ServingProcess {
  readonly generation: number;
  readonly log: Logger;
  /** The listening sockets, named (inherited_socket.ts). */
  handoffSockets(): { name: string; fd: number }[];
  /**
   * Closes this process's listeners and its control socket; accepting stops.
   * With `keep`, each TCP socket stays open here unwatched (a descriptor
   * `keep` returns): `listenAgain()` accepts on it again, `closeKept()` lets
   * it go (upgrade probation).
   */
  stopListening(keep?: (server: net.Server) => Promise<ParkedSocket>): Promise<void>;
  /** Opens the control socket again, if the server has one (status must answer first). */
  reopenControl(): Promise<void>;
  /**
   * Accepts again on the kept sockets, binding the rest (and all of them when
   * none were kept) on the same ports as before, those the kernel chose for
   * port 0 too; one attempt. True when it took kept sockets back.
   */
  listenAgain(): Promise<boolean>;
  /** Closes the sockets `stopListening(keep)` kept. */
  closeKept(): void;
  /** The port the kernel chose for each `…:0` listen entry, by the entry's text. */
  resolvedPorts(): Record<string, number>;
  drain(): Promise<void>;
  drainReport(): DrainingGeneration;
  /** Peers vouched for (admission.ts): the new process admits them under the global session rate. */
  vouchedPeers(): [string, number][];
  /** The ids of the service processes (`--workers`; none without), which drain while a new group starts. */
  servicePids(): number[];
  /** This process's counters, which the new process continues. */
  /** The totals a new process continues: the server's counters with its service's (open sessions' bytes, service processes'). */
  handoffCounters(): Record<string, unknown>;
}

/** How the last upgrade this process took part in ended: one it ran (ok, or failed and rolled back), or the one that started it. */
export interface LastUpgrade {
  outcome: "ok" | "failed" | "started this process";
  /** ISO time it ended. */
  at: string;
  /** The generation it made (or tried to). */
  generation: number;
  error?: string;
}

/** Runs an upgrade to `generation`, telling `events` as it goes and `record` how it ended (`status().lastUpgrade`). */
export function reportedUpgrade(run: () => Promise<UpgradeResult>, generation: number, events: ServerEvents | undefined, record: (u: LastUpgrade) => void): Promise<UpgradeResult> {
  const ended = (outcome: LastUpgrade["outcome"], error?: Error): void =>
    record({ outcome, at: new Date().toISOString(), generation, ...(error ? { error: error.message } : {}) });
  events?.upgradeStarted?.({ generation });
  return run().then(
    (result) => {
      ended("ok");
      events?.upgradeFinished?.(result);
      return result;
    },
    (err: Error) => {
      ended("failed", err);
      events?.upgradeFailed?.(err);
      throw err;
    },
  );
}

/** The control socket's `upgrade` request, checked. */
export function parseUpgradeRequest(req: Record<string, unknown>): UpgradeRequest {
  const out: UpgradeRequest = {};
  if (typeof req.program === "string") out.program = req.program;
  if (typeof req.app === "string") out.app = req.app;
  if (req.timeoutMs !== undefined) out.timeoutMs = checkMs(req.timeoutMs, "the upgrade request", "timeoutMs", 1, true);
  return out;
}
