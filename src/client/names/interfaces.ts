import os from "node:os";
import type { Endpoint } from "./name_types.ts";

/** One way out for a multicast or broadcast query: a socket family, an optional local address to bind, a destination. */
export interface Route {
  family: 4 | 6;
  /** The interface it goes out on: the zone of an IPv6 link-local address found through it. */
  ifname?: string;
  /** Binding the interface's own address makes Linux send multicast and broadcast out of that interface. */
  bind?: string;
  target: Endpoint;
}

/**
 * The interfaces a multicast or broadcast query goes out on: the named ones,
 * or (when none are named) every interface with a non-loopback address.
 */
function interfacesToUse(only: readonly string[] | undefined): [string, os.NetworkInterfaceInfo[]][] {
  const all = Object.entries(os.networkInterfaces()).filter((e): e is [string, os.NetworkInterfaceInfo[]] => Array.isArray(e[1]));
  return only ? all.filter(([n]) => only.includes(n)) : all.filter(([, infos]) => infos.some((i) => !i.internal));
}

/** Multicast routes: the IPv4 group from each interface's IPv4 address, the IPv6 group scoped to each interface with IPv6. */
export function multicastRoutes(group4: Endpoint, group6: Endpoint, only: readonly string[] | undefined): Route[] {
  const routes: Route[] = [];
  for (const [name, infos] of interfacesToUse(only)) {
    const v4 = infos.find((i) => i.family === "IPv4");
    if (v4) routes.push({ family: 4, ifname: name, bind: v4.address, target: group4 });
    if (infos.some((i) => i.family === "IPv6")) routes.push({ family: 6, ifname: name, target: { address: `${group6.address}%${name}`, port: group6.port } });
  }
  return routes;
}

/** Subnet broadcasts (NetBIOS): to each IPv4 subnet's broadcast address, from the interface's address. */
export function broadcastRoutes(port: number, only: readonly string[] | undefined): Route[] {
  const routes: Route[] = [];
  for (const [name, infos] of interfacesToUse(only)) {
    for (const i of infos) {
      if (i.family !== "IPv4" || i.internal) continue;
      routes.push({ family: 4, ifname: name, bind: i.address, target: { address: broadcastAddress(i.address, i.netmask), port } });
    }
  }
  return routes;
}

/** `198.18.0.1` with `255.255.255.0` → `198.18.0.255`. */
export function broadcastAddress(address: string, netmask: string): string {
  const a = address.split(".").map(Number);
  const m = netmask.split(".").map(Number);
  return a.map((o, k) => (o | (~(m[k] ?? 0) & 0xff)) & 0xff).join(".");
}
