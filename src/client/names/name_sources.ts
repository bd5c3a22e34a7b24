import { DnsSource } from "./dns_source.ts";
import { broadcastRoutes, multicastRoutes } from "./interfaces.ts";
import { LLMNR_GROUPS, MDNS_GROUPS, MulticastSource } from "./multicast_source.ts";
import type { NameSource } from "./name_types.ts";
import { NETBIOS_NS_PORT, NetbiosSource } from "./netbios_source.ts";
import type { ResolvedOptions } from "./resolution_options.ts";
import { SystemSource } from "./system_source.ts";

/** The sources a resolver asks, in order, and the unicast DNS source that reverse lookups use (null without name servers). */
export interface SourceSet {
  sources: NameSource[];
  dns: DnsSource | null;
}

/**
 * Every name source (C6): the system resolver, unicast DNS, mDNS, LLMNR and
 * NetBIOS, as `o.order` turns them on.
 */
export function nameSources(o: ResolvedOptions): SourceSet {
  const dns = o.nameServers.length > 0 ? new DnsSource(o.nameServers) : null;
  const only = o.interfaces;
  const make: Record<string, () => NameSource | null> = {
    hosts: () => new SystemSource(o.systemTtlSeconds),
    dns: () => dns,
    mdns: () => new MulticastSource("mdns", () => o.routes.mdns ?? multicastRoutes(MDNS_GROUPS.v4, MDNS_GROUPS.v6, only), o.gatherMs),
    llmnr: () => new MulticastSource("llmnr", () => o.routes.llmnr ?? multicastRoutes(LLMNR_GROUPS.v4, LLMNR_GROUPS.v6, only), o.gatherMs),
    netbios: () => new NetbiosSource(() => o.routes.netbios ?? broadcastRoutes(NETBIOS_NS_PORT, only), o.gatherMs),
  };
  return { sources: o.order.map((s) => make[s]!()).filter((s): s is NameSource => s !== null), dns };
}
