import { fstatSync } from "node:fs";

/**
 * Whether stderr is the stream journald handed this process: systemd sets
 * `JOURNAL_STREAM=DEVICE:INODE` for a unit whose output goes to the journal,
 * and a process compares it with its own stderr (systemd.exec(5)), since a
 * child whose stderr was redirected inherits the variable too. Lines
 * written there may then carry their syslog priority as a `<N>` prefix,
 * which journald strips and keeps (so `journalctl -p warning` works).
 */
export function stderrIsJournal(env: Record<string, string | undefined> = process.env, fd = 2): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? "");
  if (!m) return false;
  try {
    const st = fstatSync(fd, { bigint: true });
    return st.dev === BigInt(m[1]!) && st.ino === BigInt(m[2]!);
  } catch {
    return false;
  }
}
