import net from "node:net";
import type { Route } from "./interfaces.ts";
import type { Endpoint, SourceName } from "./name_types.ts";
import { stripZone } from "../../address.ts";
import { checkMs } from "../../duration.ts";

/** The name sources a client may ask, by the names the address list shows. */
export type ResolutionSource = "hosts" | "dns" | "mdns" | "llmnr" | "netbios";

export interface ResolutionOptions {
  /** Sources that are on, in order of preference for the address list (a source left out is off). */
  order?: ResolutionSource[];
  /** How long each source may take for one name. */
  timeoutMs?: number;
  /** Once one source has answered, how long the others may still take before `connect` goes on (they keep filling the list). */
  settleMs?: number;
  /** After a multicast or broadcast answer, how long to wait for other responders. */
  gatherMs?: number;
  /** Unicast DNS servers (`ADDR` or `ADDR:PORT`, IPv6 as `[ADDR]:PORT`); none: the `dns` source and reverse lookups are off. */
  nameServers?: string[];
  /** Reverse lookup (PTR, then forward) of a numeric address an application names, through `nameServers`. */
  reverse?: boolean;
  /** Interfaces that multicast and broadcast queries go out on (default: every interface with a non-loopback address). */
  interfaces?: string[];
  /** How long answers of the system resolver (which gives no TTL) are kept, in seconds. */
  systemTtlSeconds?: number;
  /** Names whose answers are cached (least recently used out). */
  maxCachedNames?: number;
  /** @internal For tests only: where LLMNR, mDNS and NetBIOS queries go instead of the standard groups. */
  routes?: Partial<Record<"llmnr" | "mdns" | "netbios", Route[]>>;
}

/**
 * The sources that are on unless `order` says otherwise. LLMNR and NetBIOS
 * are off: anyone on the link may answer them (they carry no authority), and
 * hardened networks turn them off; `order` (or `perilink call --resolve`)
 * turns them on.
 */
export const DEFAULT_RESOLUTION_ORDER: readonly ResolutionSource[] = Object.freeze(["hosts", "dns", "mdns"]);
export const DEFAULT_RESOLUTION_TIMEOUT_MS = 1000;
export const DEFAULT_RESOLUTION_SETTLE_MS = 50;
export const DEFAULT_RESOLUTION_GATHER_MS = 100;
export const DEFAULT_SYSTEM_TTL_SECONDS = 30;
export const DEFAULT_MAX_CACHED_NAMES = 256;

export interface ResolvedOptions {
  order: ResolutionSource[];
  timeoutMs: number;
  settleMs: number;
  gatherMs: number;
  nameServers: Endpoint[];
  reverse: boolean;
  interfaces: string[] | undefined;
  systemTtlSeconds: number;
  maxCachedNames: number;
  routes: Partial<Record<"llmnr" | "mdns" | "netbios", Route[]>>;
}

const SOURCES = new Set<SourceName>(["hosts", "dns", "mdns", "llmnr", "netbios"]);

/** Checks the options (TypeError / RangeError, or `PERILINK_CONFIG` for a millisecond option out of range) and fills in the defaults. */
export function resolveOptions(o: ResolutionOptions = {}): ResolvedOptions {
  const order = o.order ?? [...DEFAULT_RESOLUTION_ORDER];
  if (!Array.isArray(order)) throw new TypeError("resolution.order must be an array of source names");
  for (const s of order) {
    if (!SOURCES.has(s)) throw new RangeError(`resolution.order: unknown source ${JSON.stringify(s)}; use hosts, dns, mdns, llmnr, netbios`);
  }
  const nameServers = (o.nameServers ?? []).map(parseNameServer);
  return {
    order: [...new Set(order)],
    timeoutMs: o.timeoutMs === undefined ? DEFAULT_RESOLUTION_TIMEOUT_MS : checkMs(o.timeoutMs, "client option", "resolution.timeoutMs", 1),
    settleMs: checkMs(o.settleMs ?? DEFAULT_RESOLUTION_SETTLE_MS, "client option", "resolution.settleMs"),
    gatherMs: checkMs(o.gatherMs ?? DEFAULT_RESOLUTION_GATHER_MS, "client option", "resolution.gatherMs"),
    nameServers,
    reverse: o.reverse ?? nameServers.length > 0,
    interfaces: o.interfaces,
    systemTtlSeconds: nonNegative(o.systemTtlSeconds, "systemTtlSeconds", DEFAULT_SYSTEM_TTL_SECONDS),
    maxCachedNames: positive(o.maxCachedNames, "maxCachedNames", DEFAULT_MAX_CACHED_NAMES),
    routes: o.routes ?? {},
  };
}

/** `ADDR`, `ADDR:PORT` or `[ADDR6]:PORT` → endpoint (port 53 by default). */
export function parseNameServer(text: string): Endpoint {
  if (typeof text !== "string") throw new TypeError("resolution.nameServers: each entry must be a string");
  const bracket = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text);
  const v4 = /^([\d.]+)(?::(\d{1,5}))?$/.exec(text);
  const m = bracket ?? v4;
  const address = m ? m[1]! : text;
  const port = m?.[2] === undefined ? 53 : Number(m[2]);
  if (net.isIP(stripZone(address)) === 0 || port < 1 || port > 65535) {
    throw new RangeError(`resolution.nameServers: ${JSON.stringify(text)} is not ADDR, ADDR:PORT or [ADDR6]:PORT`);
  }
  return { address, port };
}

function positive(v: number | undefined, what: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`resolution.${what} must be a positive number`);
  return v;
}

function nonNegative(v: number | undefined, what: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isFinite(v) || v < 0) throw new RangeError(`resolution.${what} must be zero or a positive number`);
  return v;
}
