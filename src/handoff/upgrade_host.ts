import type { Logger } from "../logger.ts";
import type { AcceptSemaphore } from "./accept_semaphore.ts";
import type { DrainingGeneration } from "./handoff_protocol.ts";
import type { UpgradeHost } from "./upgrader.ts";

/**
 * What the supervisor needs from the server of this process to hand it over
 * (the server implements it; it knows nothing of semaphores or upgrades).
 */
export interface ServingProcess {
  readonly generation: number;
  readonly log: Logger;
  /** The listening sockets, named (inherited_sockets.ts). */
  handoffSockets(): { name: string; fd: number }[];
  /** Closes this process's listeners and its control socket; accepting stops. */
  stopListening(): Promise<void>;
  /** Opens the control socket again, if the server has one (status must answer first). */
  reopenControl(): Promise<void>;
  /** Binds the same ports as before (those the kernel chose for port 0 too) and accepts again; one attempt. */
  listenAgain(): Promise<void>;
  /** The port the kernel chose for each `…:0` listen entry, by the entry's text. */
  resolvedPorts(): Record<string, number>;
  drain(): Promise<void>;
  drainReport(): DrainingGeneration;
}

/** A rollback retries binding its ports this many times, this far apart, before giving up. */
export const REBIND_ATTEMPTS = 10;
export const REBIND_PAUSE_MS = 200;
/** How long a process waits for the accept semaphore (held only by a process of this state directory). */
export const SEMAPHORE_START_TIMEOUT_MS = 2000;

/**
 * The old side's hooks into the serving process: accept rights pass through
 * the semaphore (stop, then release), and a rollback takes the semaphore
 * and binds the ports again, retrying while the killed new process's copies
 * of the sockets go away.
 */
export function upgradeHostFor(
  proc: ServingProcess,
  semaphore: Pick<AcceptSemaphore, "acquire" | "release"> | null,
  olderGenerations: () => DrainingGeneration[],
): UpgradeHost {
  return {
    generation: proc.generation,
    log: proc.log,
    handoffSockets: () => proc.handoffSockets(),
    stopAccepting: async () => {
      await proc.stopListening();
      semaphore?.release();
    },
    resumeAccepting: async () => {
      await proc.reopenControl();
      await semaphore?.acquire(SEMAPHORE_START_TIMEOUT_MS);
      for (let attempt = 1; ; attempt++) {
        try {
          await proc.listenAgain();
          return;
        } catch (err) {
          if (attempt >= REBIND_ATTEMPTS) throw err;
          await new Promise((r) => setTimeout(r, REBIND_PAUSE_MS));
        }
      }
    },
    resolvedPorts: () => proc.resolvedPorts(),
    drain: () => proc.drain(),
    drainReport: () => proc.drainReport(),
    olderGenerations,
  };
}
