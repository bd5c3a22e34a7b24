import { promises as fs, readFileSync } from "node:fs";
import path from "node:path";
import { AgentError } from "../errors.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";

/** Overrides the agent's socket path, for the agent and the applications alike. */
export const AGENT_SOCKET_ENV = "PERILINK_AGENT_SOCKET";

/**
 * Where this user's agent listens: `$PERILINK_AGENT_SOCKET`, else
 * `$XDG_RUNTIME_DIR/perilink/agent.sock` (systemd's per-user runtime
 * directory), else `run/agent.sock` in the user's state directory (not in
 * /tmp, where another user could make the directory first).
 */
export function agentSocketPath(env: Record<string, string | undefined> = process.env): string {
  if (env[AGENT_SOCKET_ENV]) return path.resolve(env[AGENT_SOCKET_ENV]!);
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, "perilink", "agent.sock");
  return path.join(defaultStateDir(env), "run", "agent.sock");
}

/**
 * Before an application talks to the agent: the socket must be a socket
 * owned by this user, in a directory that is no link, this user's, and
 * writable by nobody else. Otherwise another user may have put it there
 * (an agent sees every request): `PERILINK_AGENT`. Resolves false when no
 * socket is there (no agent runs).
 */
export async function checkAgentSocket(p: string): Promise<boolean> {
  const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
  const [dir, sock] = await Promise.all([fs.lstat(path.dirname(p)).catch(() => null), fs.lstat(p).catch(() => null)]);
  if (dir === null || sock === null) return false;
  const refuse = (why: string): AgentError => new AgentError(`Cannot use the host agent at ${p}: ${why}; someone else may have put it there, so nothing was sent to it (remove it, or set ${AGENT_SOCKET_ENV})`);
  if (dir.isSymbolicLink() || !dir.isDirectory() || (dir.mode & 0o022) !== 0 || (uid !== undefined && dir.uid !== uid)) {
    throw refuse("its directory is a link, another user's, or writable by others");
  }
  if (!sock.isSocket()) throw refuse("it is not a socket");
  if (uid !== undefined && sock.uid !== uid) throw refuse(`it is owned by uid ${sock.uid}, not by this user (uid ${uid})`);
  return true;
}

/** A process's command name (Linux `/proc/PID/comm`), for `perilink sessions`; "" where there is none. */
export function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim().slice(0, 64);
  } catch {
    return "";
  }
}
