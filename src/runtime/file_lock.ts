import { promises as fs } from "node:fs";

/** How long a lock is waited for, and when one left by a crashed holder is taken over. */
export const LOCK_WAIT_MS = 2000;
export const LOCK_STALE_MS = 10_000;

/**
 * Runs `fn` holding `lock`, a file created with O_EXCL (so processes sharing
 * a state directory take turns at a read-modify-write of one of its files).
 * A lock older than `LOCK_STALE_MS` is taken over; after `LOCK_WAIT_MS` of
 * waiting, `busy()` is thrown.
 */
export async function withFileLock<T>(lock: string, fn: () => Promise<T>, busy: () => Error): Promise<T> {
  const deadline = performance.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await (await fs.open(lock, "wx", 0o600)).close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const age = await fs.stat(lock).then((st) => Date.now() - st.mtimeMs, () => 0);
      if (age > LOCK_STALE_MS) await fs.unlink(lock).catch(() => {});
      else if (performance.now() > deadline) throw busy();
      else await new Promise((r) => setTimeout(r, 10));
    }
  }
  try {
    return await fn();
  } finally {
    await fs.unlink(lock).catch(() => {});
  }
}
