import os from "node:os";
import { isLinkLocal, stripZone } from "../address.ts";

export interface InterfaceAddress {
  /** Bindable address; IPv6 link-local carries its zone (`fe80::1%eth0`). */
  address: string;
  family: 4 | 6;
  iface: string;
  linkLocal: boolean;
}

/**
 * Every unicast address of every interface that is up (libuv lists only
 * interfaces that are up and running), loopback included.
 */
export function interfaceAddresses(): InterfaceAddress[] {
  const out: InterfaceAddress[] = [];
  for (const [iface, entries] of Object.entries(os.networkInterfaces())) {
    for (const e of entries ?? []) {
      const family = e.family === "IPv6" || (e.family as unknown) === 6 ? 6 : 4;
      const addr = e.address.toLowerCase();
      if (family === 6 && /^ff/.test(addr)) continue; // multicast
      const linkLocal = family === 6 && isLinkLocal(addr);
      out.push({ address: linkLocal ? `${stripZone(addr)}%${iface}` : addr, family, iface, linkLocal });
    }
  }
  return out;
}
