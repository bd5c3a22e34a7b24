/**
 * Listening sockets passed in by a parent process, described with the systemd
 * socket-activation variables: `LISTEN_FDS` (count; descriptors start at 3),
 * `LISTEN_FDNAMES` (colon-separated names) and, from systemd, `LISTEN_PID`.
 * A perilink parent names each socket `<tcp|udp>@<address, URI-encoded>@<port>`
 * (names may not contain ':'), so the new process can match them to its
 * configured endpoints.
 */

/** First inherited descriptor, as in sd_listen_fds(3). */
export const LISTEN_FDS_START = 3;

export type Transport = "tcp" | "udp";

export interface InheritedSocket {
  fd: number;
  transport: Transport;
  address: string;
  port: number;
  /** Passed by systemd (socket activation) rather than by a perilink parent. */
  fromSystemd?: boolean;
}

export function socketName(transport: Transport, address: string, port: number): string {
  return `${transport}@${encodeURIComponent(address)}@${port}`;
}

export function parseSocketName(name: string): { transport: Transport; address: string; port: number } | null {
  const m = /^(tcp|udp)@([^@]+)@(\d{1,5})$/.exec(name);
  if (!m) return null;
  let address: string;
  try {
    address = decodeURIComponent(m[2]!);
  } catch {
    return null;
  }
  return { transport: m[1] as Transport, address, port: Number(m[3]) };
}

/**
 * Reads and then removes the variables from `env`, so that they do not leak
 * into processes started later. Returns the named sockets; a count or PID
 * that does not fit yields none, and unnamed descriptors are reported in `unknown`.
 */
export function takeInheritedSockets(env: NodeJS.ProcessEnv = process.env, pid = process.pid): { sockets: InheritedSocket[]; unknown: number[] } {
  const count = Number(env.LISTEN_FDS ?? "0");
  const forPid = env.LISTEN_PID;
  const names = (env.LISTEN_FDNAMES ?? "").split(":");
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  delete env.LISTEN_PID;
  const sockets: InheritedSocket[] = [];
  const unknown: number[] = [];
  if (!Number.isInteger(count) || count <= 0 || count > 1024) return { sockets, unknown };
  if (forPid !== undefined && Number(forPid) !== pid) return { sockets, unknown };
  for (let i = 0; i < count; i++) {
    const fd = LISTEN_FDS_START + i;
    const parsed = parseSocketName(names[i] ?? "");
    if (parsed) sockets.push({ fd, ...parsed });
    else unknown.push(fd);
  }
  return { sockets, unknown };
}
