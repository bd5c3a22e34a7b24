import { randomBytes } from "node:crypto";
import { promises as fs, type Stats } from "node:fs";

/** How long a lock is waited for, and when one left by a crashed holder is taken over. */
export const LOCK_WAIT_MS = 2000;
export const LOCK_STALE_MS = 10_000;

/**
 * Runs `fn` holding `lock`, a file created with O_EXCL (so processes sharing
 * a state directory take turns at a read-modify-write of one of its files).
 * A lock older than `LOCK_STALE_MS` is taken over; after `LOCK_WAIT_MS` of
 * waiting, `busy()` is thrown.
 *
 * Taking over is careful, because several waiters see the same stale lock
 * at once: one deleting it by name could delete the fresh lock the quickest
 * of them made in its place, and two would hold it. So only the waiter that
 * holds `LOCK.takeover` (O_EXCL too, held for two system calls) may delete a
 * stale lock, after checking that it is still that stale file: while it is
 * there nobody can make a fresh one. Releasing, a holder deletes the lock
 * only while it is still its own.
 */
export async function withFileLock<T>(lock: string, fn: () => Promise<T>, busy: () => Error): Promise<T> {
  const deadline = performance.now() + LOCK_WAIT_MS;
  // What the lock file says: whose it is (an inode number can be reused at once, a token is not).
  const token = `${process.pid} ${randomBytes(8).toString("hex")}\n`;
  for (;;) {
    try {
      const fd = await fs.open(lock, "wx", 0o600);
      try {
        await fd.writeFile(token);
      } finally {
        await fd.close();
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const st = await fs.stat(lock).catch(() => null);
      if (st !== null && isStale(st) && (await takeOver(lock, st))) continue;
      if (performance.now() > deadline) throw busy();
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  try {
    return await fn();
  } finally {
    if ((await fs.readFile(lock, "utf8").catch(() => null)) === token) await fs.unlink(lock).catch(() => {});
  }
}

const isStale = (st: Stats): boolean => Date.now() - st.mtimeMs > LOCK_STALE_MS;

/** Under `lock.takeover`: deletes `lock` if it is still the stale file `seen`. False when another waiter is at it. */
async function takeOver(lock: string, seen: Stats): Promise<boolean> {
  const guard = `${lock}.takeover`;
  try {
    await (await fs.open(guard, "wx", 0o600)).close();
  } catch {
    // Another waiter is taking over; a guard left by one that crashed in those two calls goes when stale.
    const g = await fs.stat(guard).catch(() => null);
    if (g !== null && isStale(g)) await fs.unlink(guard).catch(() => {});
    return false;
  }
  try {
    const now = await fs.stat(lock).catch(() => null);
    // Still stale, so still the file seen (a fresh lock is not stale): nobody can make one while it is there.
    if (now !== null && now.ino === seen.ino && isStale(now)) await fs.unlink(lock).catch(() => {});
    return true;
  } finally {
    await fs.unlink(guard).catch(() => {});
  }
}
