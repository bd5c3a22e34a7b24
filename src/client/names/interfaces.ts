import os from "node:os";
import { isOnLink } from "../../address.ts";
import type { Endpoint } from "./name_types.ts";

/** The on-link rule lives with the other address helpers (the server's mDNS responder applies it too). */
export { isOnLink };

/** One way out for a multicast or broadcast query: a socket family, an optional local address to bind, a destination. */
export interface Route {
  family: 4 | 6;
  /** The interface it goes out on: the zone of an IPv6 link-local address found through it. */
  ifname?: string;
  /** Binding the interface's own address makes Linux send multicast and broadcast out of that interface. */
  bind?: string;
  target: Endpoint;
  /**
   * The subnets of the interface (`ADDR/PREFIX`): an answer to a query sent
   * this way counts only from a source on one of them, or (IPv6) from a
   * link-local address (RFC 6762 §11, RFC 4795 §2.5) — a responder off the
   * link is not one. Unset for a route to a fixed service (tests).
   */
  onLink?: string[];
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
    const cidrs = (family: string): string[] => infos.filter((i) => i.family === family && i.cidr).map((i) => i.cidr!);
    if (v4) routes.push({ family: 4, ifname: name, bind: v4.address, target: group4, onLink: cidrs("IPv4") });
    if (infos.some((i) => i.family === "IPv6")) routes.push({ family: 6, ifname: name, target: { address: `${group6.address}%${name}`, port: group6.port }, onLink: cidrs("IPv6") });
  }
  return routes;
}

/** Subnet broadcasts (NetBIOS): to each IPv4 subnet's broadcast address, from the interface's address. */
export function broadcastRoutes(port: number, only: readonly string[] | undefined): Route[] {
  const routes: Route[] = [];
  for (const [name, infos] of interfacesToUse(only)) {
    for (const i of infos) {
      if (i.family !== "IPv4" || i.internal) continue;
      routes.push({ family: 4, ifname: name, bind: i.address, target: { address: broadcastAddress(i.address, i.netmask), port }, onLink: i.cidr ? [i.cidr] : [] });
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
