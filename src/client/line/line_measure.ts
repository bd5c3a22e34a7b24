/**
 * Measures the line to one address of a server (C8): the outgoing
 * interface's bandwidth (its link speed, or a shaper's rate on it when
 * lower — a bottleneck further along the path is not seen), the routers on
 * the way and the round-trip time (TTL-limited probes to the server's
 * identify responder), and the path MTU (the kernel's learned PMTU for the
 * destination — the first probe, as large as the link carries and sent
 * with DF, makes a smaller MTU on the way known — else the link's MTU).
 */
import { promises as dns } from "node:dns";
import net from "node:net";
import { probeHops } from "./hop_probe.ts";
import type { LineSystem } from "./line_system.ts";
import { stripZone } from "../../address.ts";

export interface LineMeasure {
  bandwidthMbps: number | null;
  routers: number | null;
  pathMtu: number | null;
  rttMs: number | null;
  /** False when no probe was answered: the address is not usable now. */
  reachable: boolean;
  /** performance.now() when the measure was taken. */
  measuredAt: number;
  /** What the measure cost: datagrams sent and wall time. */
  probesSent: number;
  ms: number;
}

export interface MeasureOptions {
  system: LineSystem;
  maxHops: number;
  timeoutMs: number;
  serverId?: string;
  signal?: AbortSignal;
}

export async function measureLine(host: string, port: number, opts: MeasureOptions): Promise<LineMeasure> {
  const start = performance.now();
  let address = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (net.isIP(stripZone(address)) === 0) {
    try {
      address = (await dns.lookup(address)).address;
    } catch {
      return { bandwidthMbps: null, routers: null, pathMtu: null, rttMs: null, reachable: false, measuredAt: start, probesSent: 0, ms: performance.now() - start };
    }
  }
  const route = await opts.system.route(address);
  const [speed, shaper, linkMtu] = route
    ? await Promise.all([opts.system.linkSpeedMbps(route.dev), opts.system.shaperRateMbps(route.dev), opts.system.linkMtu(route.dev)])
    : [null, null, null];
  // The full-TTL probe fills the link's MTU: a smaller MTU further on is learned by the kernel.
  const headers = net.isIPv6(stripZone(address)) ? 48 : 28;
  const padTo = (route?.pmtu ?? linkMtu ?? 0) - headers;
  const hops = await probeHops(address, port, { maxHops: opts.maxHops, timeoutMs: opts.timeoutMs, serverId: opts.serverId, signal: opts.signal, padTo });
  const bandwidthMbps = speed === null ? shaper : shaper === null ? speed : Math.min(speed, shaper);
  let pathMtu: number | null = null;
  if (route) {
    const pmtu = (await opts.system.route(address))?.pmtu ?? route.pmtu; // what the probe taught the kernel
    pathMtu = pmtu === null ? linkMtu : linkMtu === null ? pmtu : Math.min(pmtu, linkMtu);
  }
  return {
    bandwidthMbps,
    routers: hops.routers,
    pathMtu,
    rttMs: hops.rttMs,
    reachable: hops.reachable,
    measuredAt: start,
    probesSent: hops.probesSent,
    ms: performance.now() - start,
  };
}
