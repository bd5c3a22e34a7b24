import type { AcceptSemaphore } from "./accept_semaphore.ts";
import type { AppHandoff } from "../server/app_handoff.ts";
import { SEMAPHORE_START_TIMEOUT_MS, type DrainingGeneration, type ServingProcess } from "../server/server_handoff.ts";
import type { AppStates } from "./handoff_protocol.ts";
import type { UpgradeHost } from "./upgrader.ts";

/** A group's (`--workers`) side of the app's handoff: the states of its service processes; no descriptors pass. */
export interface GroupHandoff {
  appStates(): Promise<AppStates>;
}

/** A rollback retries binding its ports this many times, this far apart, before giving up. */
export const REBIND_ATTEMPTS = 10;
export const REBIND_PAUSE_MS = 200;

/**
 * The old side's hooks into the serving process: accept rights pass through
 * the semaphore (stop, then release), and a rollback takes the semaphore
 * and binds the ports again, retrying while the killed new process's copies
 * of the sockets go away. What the app puts for its successor comes from
 * `handoff` (a group's: the states its service processes put).
 */
export function upgradeHostFor(
  proc: ServingProcess,
  semaphore: Pick<AcceptSemaphore, "acquire" | "release"> | null,
  olderGenerations: () => DrainingGeneration[],
  handoff: Pick<AppHandoff, "outgoing" | "outgoingState"> | GroupHandoff | null = null,
  probationMs = 0,
): UpgradeHost {
  return {
    generation: proc.generation,
    probationMs,
    closeKept: () => proc.closeKept(),
    log: proc.log,
    handoffSockets: () => proc.handoffSockets(),
    stopAccepting: async (keep) => {
      await proc.stopListening(keep);
      semaphore?.release();
    },
    resumeAccepting: async () => {
      await proc.reopenControl();
      await semaphore?.acquire(SEMAPHORE_START_TIMEOUT_MS);
      for (let attempt = 1; ; attempt++) {
        try {
          return await proc.listenAgain();
        } catch (err) {
          if (attempt >= REBIND_ATTEMPTS) throw err;
          // The kept TCP sockets stay open meanwhile, their queued connections too (retainInherited): the retry adopts them again.
          proc.log.warn("rebind_retry", { attempt, of: REBIND_ATTEMPTS, pauseMs: REBIND_PAUSE_MS, error: (err as Error).message });
          await new Promise((r) => setTimeout(r, REBIND_PAUSE_MS));
        }
      }
    },
    resolvedPorts: () => proc.resolvedPorts(),
    drain: () => proc.drain(),
    drainReport: () => proc.drainReport(),
    vouchedPeers: () => proc.vouchedPeers(),
    servicePids: () => proc.servicePids(),
    counters: () => proc.handoffCounters(),
    olderGenerations,
    appDescriptors: () => (handoff && "outgoing" in handoff ? handoff.outgoing() : []),
    appState: () => (handoff && "appStates" in handoff ? handoff.appStates() : { state: handoff?.outgoingState() ?? null }),
  };
}
