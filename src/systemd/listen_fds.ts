/** First passed descriptor, as in sd_listen_fds(3). */
export const LISTEN_FDS_START = 3;

/** The descriptors a parent passed, as sd_listen_fds(3) describes them. */
export interface ListenFds {
  /** `LISTEN_FDS`: descriptors `LISTEN_FDS_START` … `LISTEN_FDS_START + count - 1` (may be out of range; callers check). */
  count: number;
  /** `LISTEN_FDNAMES`, split at ':' (shorter than `count` when names are missing). */
  names: string[];
  /** Whether `LISTEN_PID` was set (systemd sets it; a perilink parent need not). */
  pidSet: boolean;
}

/**
 * Reads `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` and removes them from
 * `env`, so that processes started later do not take the descriptors for
 * theirs. The one parser of these variables, for the sockets an upgrade hands
 * over (handoff/inherited_sockets.ts) and those systemd passes
 * (activation_sockets.ts). Null when none were passed to this process:
 * `LISTEN_FDS` absent or not a positive integer, or `LISTEN_PID` naming
 * another process.
 */
export function takeListenFds(env: NodeJS.ProcessEnv, pid: number): ListenFds | null {
  const fds = env.LISTEN_FDS;
  const forPid = env.LISTEN_PID;
  const names = env.LISTEN_FDNAMES;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  delete env.LISTEN_PID;
  if (fds === undefined) return null;
  const count = Number(fds);
  if (!Number.isInteger(count) || count <= 0) return null;
  if (forPid !== undefined && Number(forPid) !== pid) return null;
  return { count, names: (names ?? "").split(":"), pidSet: forPid !== undefined };
}
