import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/**
 * Established TCP connections of this process to any of `ports`, seen from
 * the OS side: the socket inodes in /proc/self/fd matched against the rows of
 * /proc/net/tcp and /proc/net/tcp6 in state 01 (ESTABLISHED) whose remote port
 * is one of `ports`. Returns their inodes; null when /proc is not there (not Linux).
 * (The tests count sockets with it too, through test/helpers/os_sockets.ts.)
 */
export function tcpSocketsTo(ports: Iterable<number>): Set<string> | null {
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
  const found = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    const lines = text.split("\n");
    for (let i = 1; i < lines.length; i++) {
      const f = lines[i]!.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== "01") continue;
      const remPort = parseInt(f[2]!.split(":")[1]!, 16);
      if (want.has(remPort) && inodes.has(f[9]!)) found.add(f[9]!);
    }
  }
  return found;
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
