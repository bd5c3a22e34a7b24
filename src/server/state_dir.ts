import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ConfigError } from "../errors.ts";

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

/** Creates `dir` (and parents) if needed and makes sure it is mode 0700. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const st = await fs.stat(dir);
    if (!st.isDirectory()) throw new ConfigError(`Cannot use state directory ${dir}: it is not a directory`);
    if ((st.mode & 0o777) !== 0o700) await fs.chmod(dir, 0o700);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`Cannot use state directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
}

/** Writes a file atomically: temp file, fsync, rename, fsync of the directory. */
export async function writeFileAtomic(file: string, data: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  const fh = await fs.open(tmp, "w", mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.chmod(tmp, mode);
  await fs.rename(tmp, file);
  const dh = await fs.open(path.dirname(file), "r");
  try {
    await dh.sync();
  } catch {
    // Some file systems cannot fsync a directory; the rename is still atomic.
  } finally {
    await dh.close();
  }
}
