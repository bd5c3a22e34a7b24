import { ConfigError } from "../../errors.ts";
import { TARGET } from "../../target.ts";
import type { SourceSet } from "./name_sources.ts";
import type { ResolvedOptions } from "./resolution_options.ts";
import { SystemSource } from "./system_source.ts";

/**
 * The name sources of a device build (`"nameSources": "system"`): the
 * system resolver only — /etc/hosts, DNS through resolv.conf, and mDNS
 * where nsswitch has it (nss-mdns on Raspberry Pi OS). A peripheral names
 * few peers, and its bundle has a size budget: the multi-source resolver
 * (unicast DNS with TTLs and reverse lookups, mDNS, LLMNR, NetBIOS) and its
 * DNS codec stay in the host builds and the library. Asking this build for
 * another source is a configuration error that says where to find it.
 */
export function nameSources(o: ResolvedOptions, explicit: boolean): SourceSet {
  const other = o.order.filter((s) => s !== "hosts");
  if ((explicit && other.length > 0) || o.nameServers.length > 0) {
    const what = o.nameServers.length > 0 ? "name servers of its own" : `the ${other.join(", ")} source${other.length > 1 ? "s" : ""}`;
    throw new ConfigError(`Cannot resolve with ${what}: the ${TARGET.name} build resolves names through the system resolver only (hosts); run the node20 bundle or the library on a host for the other sources`);
  }
  return { sources: o.order.includes("hosts") ? [new SystemSource(o.systemTtlSeconds)] : [], dns: null };
}
