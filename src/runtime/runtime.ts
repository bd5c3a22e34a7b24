/**
 * The one place that knows Node.js from Deno. Everything else asks this
 * module what the runtime can do instead of testing for `Deno` itself.
 */

export type RuntimeName = "node" | "deno";

export interface RuntimeInfo {
  name: RuntimeName;
  version: string;
  /**
   * Whether a TCP listener can bind an IPv6 link-local address with a zone
   * (`fe80::1%eth0`). Deno's node:net rejects it with EINVAL.
   */
  canListenLinkLocal: boolean;
  /** Whether a child process can inherit and adopt a listening socket's file descriptor. */
  canInheritSockets: boolean;
  /**
   * How a new process takes over the listening ports on upgrade:
   * `inherit` — the sockets are handed over open (Node.js);
   * `reuseport` — the new process binds the same ports with SO_REUSEPORT
   * while the old one still listens (Deno, which cannot inherit sockets).
   */
  handoff: "inherit" | "reuseport";
  /**
   * Whether `dgram` `setTTL()` limits the hop count of IPv6 datagrams too
   * (IPV6_UNICAST_HOPS). Deno's sets only the IPv4 TTL, so an IPv6 line
   * measure there cannot count routers.
   */
  canLimitIpv6Hops: boolean;
  /**
   * Whether a node:http server handed a socket through a 'connection' event
   * keeps it open after a keep-alive response, for the client's next request.
   * Deno's ends it after each response, though the response said
   * `Connection: keep-alive`: a client's next request on it is reset.
   */
  keepsHandedHttpConnections: boolean;
  /**
   * Whether this side seals large records (§2.5) to a peer that announced
   * them. Deno's collector lags behind large native buffers: under a flood of
   * 1 MB requests a Deno server sealing its answers in 68 KiB records peaked
   * 15 MiB higher (74–81 MiB over idle, against 57–64 in 16 KiB records),
   * while Node.js's peak did not move (41–45). Deno still opens large records.
   */
  sealsLargeRecords: boolean;
  /** Arguments between the runtime executable and a script, to start another process like this one. */
  scriptArgs: string[];
}

interface DenoGlobal {
  version: { deno: string };
}

let cached: RuntimeInfo | undefined;

export function detectRuntime(): RuntimeInfo {
  if (cached) return cached;
  const deno = (globalThis as { Deno?: DenoGlobal }).Deno;
  cached = deno
    ? { name: "deno", version: deno.version.deno, canListenLinkLocal: false, canInheritSockets: false, canLimitIpv6Hops: false, keepsHandedHttpConnections: false, sealsLargeRecords: false, handoff: "reuseport", scriptArgs: ["run", "-A"] }
    : { name: "node", version: process.versions.node, canListenLinkLocal: true, canInheritSockets: true, canLimitIpv6Hops: true, keepsHandedHttpConnections: true, sealsLargeRecords: true, handoff: "inherit", scriptArgs: process.execArgv };
  return cached;
}
