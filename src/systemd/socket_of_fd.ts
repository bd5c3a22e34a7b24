import { readFileSync, readlinkSync } from "node:fs";

/** What the kernel says a descriptor is bound to. */
export interface BoundSocket {
  transport: "tcp" | "udp";
  family: 4 | 6;
  address: string;
  port: number;
}

/**
 * The local address of the TCP or UDP socket open as descriptor `fd` in this
 * process, read from Linux's /proc (the socket's inode in /proc/self/fd,
 * then its row in /proc/self/net/{tcp,tcp6,udp,udp6}) without touching the
 * socket itself: Node can only read an address after it has adopted a
 * descriptor, and adopting one as the wrong kind of socket fails. Null for
 * anything else (a Unix socket, a pipe, a closed descriptor) or without /proc.
 */
export function socketOfFd(fd: number, proc = "/proc/self"): BoundSocket | null {
  let inode: string;
  try {
    const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`${proc}/fd/${fd}`));
    if (!m) return null;
    inode = m[1]!;
  } catch {
    return null;
  }
  for (const [file, transport, family] of TABLES) {
    let text: string;
    try {
      text = readFileSync(`${proc}/net/${file}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
      if (f[9] !== inode) continue;
      const [hexAddr, hexPort] = f[1]!.split(":") as [string, string];
      return { transport, family, address: family === 4 ? ipv4(hexAddr) : ipv6(hexAddr), port: parseInt(hexPort, 16) };
    }
  }
  return null;
}

const TABLES: [string, "tcp" | "udp", 4 | 6][] = [
  ["tcp", "tcp", 4],
  ["tcp6", "tcp", 6],
  ["udp", "udp", 4],
  ["udp6", "udp", 6],
];

/** /proc writes an address as 32-bit words in host byte order: little-endian on every Linux perilink targets. */
function wordBytes(hex: string): number[] {
  const out: number[] = [];
  for (let w = 0; w < hex.length; w += 8) {
    for (let b = 6; b >= 0; b -= 2) out.push(parseInt(hex.slice(w + b, w + b + 2), 16));
  }
  return out;
}

function ipv4(hex: string): string {
  return wordBytes(hex).join(".");
}

function ipv6(hex: string): string {
  const bytes = wordBytes(hex);
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${bytes.slice(12).join(".")}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // Shorten the longest run of zero groups to "::", as Node writes addresses.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(":");
  const head = groups.slice(0, best).join(":");
  const tail = groups.slice(best + bestLen).join(":");
  return `${head}::${tail}`;
}
