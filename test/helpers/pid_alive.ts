import { after } from "node:test";
import { waitFor } from "./fixtures.ts";

/** Whether a process `pid` exists that this process may signal (signal 0; a zombie counts as alive). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILL to each pid that still exists (gone ones are skipped). */
export function killPids(pids: Iterable<number>): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone already
    }
  }
}

/** A set of pids killed after the test file: for serving processes a test saw but did not start (later generations). */
export function pidsKilledAfterFile(): Set<number> {
  const pids = new Set<number>();
  after(() => killPids(pids));
  return pids;
}

/**
 * Runs `checks`, then, whether or not they passed, stops the process `pid`
 * (one an upgrade started: not a child of the test) with SIGTERM and waits
 * for it to go, SIGKILL after 10 s.
 */
export async function stopPidAfter(pid: number, checks: () => Promise<void>, what = "the new process"): Promise<void> {
  try {
    await checks();
  } finally {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone already
    }
    await waitFor(() => !pidAlive(pid), `${what} to stop`, 10_000).catch(() => process.kill(pid, "SIGKILL"));
  }
}
