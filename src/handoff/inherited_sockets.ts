import { parseSocketName, type InheritedSocket } from "../server/inherited_socket.ts";
import { LISTEN_FDS_START, takeListenFds } from "../systemd/listen_fds.ts";
import { APP_FD_PREFIX } from "./handoff_protocol.ts";

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
 * into processes started later. Returns the named sockets and the
 * descriptors the old process's app put (`app@NAME`, handoff_protocol.ts);
 * a count or PID that does not fit yields none, and unnamed descriptors are
 * reported in `unknown`.
 */
export function takeInheritedSockets(
  env: NodeJS.ProcessEnv = process.env,
  pid = process.pid,
): { sockets: InheritedSocket[]; app: { name: string; fd: number }[]; unknown: number[] } {
  const passed = takeListenFds(env, pid);
  const sockets: InheritedSocket[] = [];
  const app: { name: string; fd: number }[] = [];
  const unknown: number[] = [];
  if (passed === null || passed.count > MAX_INHERITED) return { sockets, app, unknown };
  for (let i = 0; i < passed.count; i++) {
    const fd = LISTEN_FDS_START + i;
    const name = passed.names[i] ?? "";
    const parsed = parseSocketName(name);
    if (parsed) sockets.push({ fd, ...parsed });
    else if (name.startsWith(APP_FD_PREFIX) && name.length > APP_FD_PREFIX.length) app.push({ name: name.slice(APP_FD_PREFIX.length), fd });
    else unknown.push(fd);
  }
  return { sockets, app, unknown };
}
