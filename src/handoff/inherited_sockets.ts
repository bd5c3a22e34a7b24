import { parseSocketName, type InheritedSocket } from "../server/inherited_socket.ts";
import { LISTEN_FDS_START, takeListenFds } from "../systemd/listen_fds.ts";

/**
 * Listening sockets passed in by a perilink parent at an upgrade (S4),
 * described with the systemd socket-activation variables (`LISTEN_FDS`,
 * `LISTEN_FDNAMES`, optionally `LISTEN_PID`; systemd/listen_fds.ts), each
 * named as server/inherited_socket.ts says so the new process can match them
 * to its configured endpoints.
 */

/** More than this many is not from a perilink parent (it passes two per endpoint). */
const MAX_INHERITED = 1024;

/**
 * Reads and then removes the variables from `env`, so that they do not leak
 * into processes started later. Returns the named sockets; a count or PID
 * that does not fit yields none, and unnamed descriptors are reported in `unknown`.
 */
export function takeInheritedSockets(env: NodeJS.ProcessEnv = process.env, pid = process.pid): { sockets: InheritedSocket[]; unknown: number[] } {
  const passed = takeListenFds(env, pid);
  const sockets: InheritedSocket[] = [];
  const unknown: number[] = [];
  if (passed === null || passed.count > MAX_INHERITED) return { sockets, unknown };
  for (let i = 0; i < passed.count; i++) {
    const fd = LISTEN_FDS_START + i;
    const parsed = parseSocketName(passed.names[i] ?? "");
    if (parsed) sockets.push({ fd, ...parsed });
    else unknown.push(fd);
  }
  return { sockets, unknown };
}
