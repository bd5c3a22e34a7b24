import { promises as fs, type Stats } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ConfigError, StateDirError } from "../errors.ts";

/**
 * The default state directory: `$PERILINK_STATE_DIR`, else `/var/lib/perilink`
 * for root, else `$XDG_STATE_HOME/perilink` (`~/.local/state/perilink`).
 */
export function defaultStateDir(env: Record<string, string | undefined> = process.env): string {
  if (env.PERILINK_STATE_DIR) return env.PERILINK_STATE_DIR;
  if (typeof process.getuid === "function" && process.getuid() === 0) return "/var/lib/perilink";
  const base = env.XDG_STATE_HOME || path.join(os.homedir(), ".local", "state");
  return path.join(base, "perilink");
}

/**
 * Creates `dir` (and parents) if needed and makes sure it is private: owned
 * by this user and writable by nobody else (`StateDirError` otherwise; such a
 * directory is refused, not repaired, since someone else may already have
 * put files in it). One that others can only read is tightened to 0700.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  let st: Stats;
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    st = await fs.lstat(dir);
  } catch (err) {
    throw new ConfigError(`Cannot use state directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
  // A link is refused, not followed: whoever may change it decides where the keys go.
  if (st.isSymbolicLink()) throw new StateDirError(`Cannot use state directory ${dir}: it is a symbolic link; give the directory it points to, or replace the link with it`);
  if (!st.isDirectory()) throw new ConfigError(`Cannot use state directory ${dir}: it is not a directory`);
  const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
  if (uid !== undefined && st.uid !== uid) {
    throw new StateDirError(
      `Cannot use state directory ${dir}: it is owned by uid ${st.uid}, not by this user (uid ${uid}); give it to this user (chown) or choose another --state-dir`,
    );
  }
  if ((st.mode & 0o022) !== 0) {
    const who = (st.mode & 0o020) !== 0 ? ((st.mode & 0o002) !== 0 ? "group and others" : "group") : "others";
    throw new StateDirError(
      `Cannot use state directory ${dir}: it is writable by ${who} (mode ${(st.mode & 0o7777).toString(8).padStart(4, "0")}); check what is in it, then "chmod 700" it, or choose another --state-dir`,
    );
  }
  await checkAncestors(dir, uid);
  if ((st.mode & 0o777) !== 0o700) {
    try {
      await fs.chmod(dir, 0o700);
    } catch (err) {
      throw new ConfigError(`Cannot use state directory ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * Whoever may rename or replace a directory above the state directory can
 * swap the state directory itself: every one of them must be owned by root
 * or this user, and not writable by others unless sticky (as /tmp is, where
 * only an entry's owner may rename it) — along the path as given (a link on
 * it must be root's or this user's, in a directory that passes too) and
 * along the directories it leads to. Group-writable parents are allowed:
 * user-private groups are common, and a group one shares is trusted here.
 */
async function checkAncestors(dir: string, uid: number | undefined): Promise<void> {
  if (uid === undefined) return;
  // The path as given (a link on the way can be replaced by whoever may write beside it), then the
  // directories it leads to.
  await checkChain(path.dirname(path.resolve(dir)), dir, uid, fs.lstat);
  const real = await fs.realpath(dir).catch(() => null);
  if (real !== null) await checkChain(path.dirname(real), dir, uid, fs.stat);
}

async function checkChain(from: string, dir: string, uid: number, look: (p: string) => Promise<Stats>): Promise<void> {
  let at = from;
  for (let i = 0; i < 64; i++) {
    const st = await look(at).catch(() => null);
    if (st !== null) {
      if (st.uid !== 0 && st.uid !== uid) {
        throw new StateDirError(`Cannot use state directory ${dir}: ${at} above it is owned by uid ${st.uid}, who could replace the state directory; choose a --state-dir under directories of root or this user`);
      }
      if (st.isDirectory() && (st.mode & 0o002) !== 0 && (st.mode & 0o1000) === 0) {
        throw new StateDirError(`Cannot use state directory ${dir}: ${at} above it is writable by everyone and not sticky, so anyone could replace the state directory; "chmod o-w ${at}" (or +t), or choose another --state-dir`);
      }
    }
    const up = path.dirname(at);
    if (up === at) return;
    at = up;
  }
}
