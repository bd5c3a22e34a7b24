import { tcpSocketsTo } from "../../bench/lib/os_sockets.ts";

/**
 * Established TCP connections of this process to any of `ports`, counted from
 * the OS side (/proc/self/fd against /proc/net/tcp{,6}; the benchmarks count
 * sockets the same way). Linux only; returns null elsewhere.
 */
export function tcpConnectionsTo(ports: number[]): number | null {
  return tcpSocketsTo(ports)?.size ?? null;
}
