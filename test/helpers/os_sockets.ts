import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/**
 * Established TCP connections of this process to any of `ports`, counted from
 * the OS side: socket inodes in /proc/self/fd matched against /proc/net/tcp{,6}.
 * Linux only; returns null elsewhere.
 */
export function tcpConnectionsTo(ports: number[]): number | null {
  let fds: string[];
  try {
    fds = readdirSync("/proc/self/fd");
  } catch {
    return null;
  }
  const inodes = new Set<string>();
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const want = new Set(ports);
  let n = 0;
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const remPort = parseInt(f[2]!.split(":")[1]!, 16);
      if (f[3] === "01" && want.has(remPort) && inodes.has(f[9]!)) n++;
    }
  }
  return n;
}
