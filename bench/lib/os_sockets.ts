import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** This process's socket descriptors by inode (/proc/self/fd); null when /proc is not there (not Linux). */
function socketFdsByInode(): Map<string, number> | null {
  let fds: string[];
  try {
    fds = readdirSync("/proc/self/fd");
  } catch {
    return null;
  }
  const out = new Map<string, number>();
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) out.set(m[1]!, Number(fd));
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** The rows of /proc/net/`proto` and /proc/net/`proto`6: local and remote port, state (hex, "01" ESTABLISHED for TCP), inode. */
function* netRows(proto: "tcp" | "udp"): Generator<{ localPort: number; remotePort: number; state: string; inode: string }> {
  for (const file of [`/proc/net/${proto}`, `/proc/net/${proto}6`]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    const lines = text.split("\n");
    for (let i = 1; i < lines.length; i++) {
      const f = lines[i]!.trim().split(/\s+/);
      if (f.length < 10) continue;
      yield { localPort: parseInt(f[1]!.split(":")[1]!, 16), remotePort: parseInt(f[2]!.split(":")[1]!, 16), state: f[3]!, inode: f[9]! };
    }
  }
}

/**
 * Established TCP connections of this process to any of `ports`, seen from
 * the OS side: the socket inodes in /proc/self/fd matched against the rows of
 * /proc/net/tcp and /proc/net/tcp6 in state 01 (ESTABLISHED) whose remote port
 * is one of `ports`. Returns their inodes; null when /proc is not there (not Linux).
 * (The tests count sockets with it too, through test/helpers/os_sockets.ts.)
 */
export function tcpSocketsTo(ports: Iterable<number>): Set<string> | null {
  const inodes = socketFdsByInode();
  if (inodes === null) return null;
  const want = new Set(ports);
  const found = new Set<string>();
  for (const r of netRows("tcp")) if (r.state === "01" && want.has(r.remotePort) && inodes.has(r.inode)) found.add(r.inode);
  return found;
}

/** This process's descriptors of UDP sockets bound to local `port` (none when /proc is not there). */
export function udpSocketFds(port: number): number[] {
  const inodes = socketFdsByInode();
  if (inodes === null) return [];
  const out: number[] = [];
  for (const r of netRows("udp")) {
    const fd = r.localPort === port ? inodes.get(r.inode) : undefined;
    if (fd !== undefined) out.push(fd);
  }
  return out;
}

/**
 * Samples `tcpSocketsTo(ports)` every `everyMs` until `stop()`: the largest
 * count seen (peak) and every distinct socket seen. Sampling costs the
 * process some CPU (two /proc reads), so keep `everyMs` coarse.
 */
export class SocketSampler {
  #ports: number[];
  #timer: ReturnType<typeof setInterval> | null = null;
  peak = 0;
  samples = 0;
  readonly seen = new Set<string>();

  constructor(ports: number[]) {
    this.#ports = ports;
  }

  /** Takes one sample now; returns the count (NaN when /proc is missing). */
  sample(): number {
    const s = tcpSocketsTo(this.#ports);
    if (s === null) return NaN;
    this.samples++;
    if (s.size > this.peak) this.peak = s.size;
    for (const i of s) this.seen.add(i);
    return s.size;
  }

  start(everyMs: number): void {
    this.stop();
    this.sample();
    this.#timer = setInterval(() => this.sample(), everyMs);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
