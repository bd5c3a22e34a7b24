import { randomBytes } from "node:crypto";
import { constants as fsConstants, promises as fs } from "node:fs";
import path from "node:path";

/** Opening flags for a new temporary file: it must not exist yet, and a symlink is never followed. */
const TEMP_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | (fsConstants.O_NOFOLLOW ?? 0);

/**
 * Writes a file atomically, for the identity, the pins and every other file
 * of a state directory: a hidden temporary file with an unpredictable name,
 * created with O_EXCL|O_NOFOLLOW (so nothing planted at that name is
 * followed or reused), fsync, rename over `file`, fsync of the directory.
 */
export async function writeFileAtomic(file: string, data: string, mode: number): Promise<void> {
  await writeVia(file, data, mode, false);
}

/**
 * As `writeFileAtomic()`, but never replaces a file that exists: the whole
 * file appears at once (a hard link) or not at all. False when `file`
 * already existed; so of two processes that create one key at once, both
 * end up reading the one that won.
 */
export async function createFileAtomic(file: string, data: string, mode: number): Promise<boolean> {
  return writeVia(file, data, mode, true);
}

async function writeVia(file: string, data: string, mode: number, exclusive: boolean): Promise<boolean> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(12).toString("hex")}.tmp`);
  const fh = await fs.open(tmp, TEMP_FLAGS, mode);
  try {
    try {
      await fh.writeFile(data);
      // The umask may have narrowed the mode: widen it back to `mode`, never beyond. A file
      // system that cannot (vfat, some FUSE mounts) keeps what O_CREAT gave, no more than `mode`.
      await fh.chmod(mode).catch(() => {});
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (exclusive) {
      try {
        await fs.link(tmp, file);
      } finally {
        await fs.rm(tmp, { force: true }).catch(() => {});
      }
    } else {
      await fs.rename(tmp, file);
    }
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => {});
    if (exclusive && (err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
  const dh = await fs.open(path.dirname(file), "r");
  try {
    await dh.sync();
  } catch {
    // Some file systems cannot fsync a directory; the rename is still atomic.
  } finally {
    await dh.close();
  }
  return true;
}
