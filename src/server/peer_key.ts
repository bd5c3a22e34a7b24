import { ipv6Groups, mappedIPv4 } from "../address.ts";

/**
 * The key under which per-peer limits count a remote address:
 *
 * - IPv4: the address itself (`192.0.2.1`);
 * - IPv4-mapped IPv6 (`::ffff:192.0.2.1`, as a dual-stack socket reports an
 *   IPv4 peer): the IPv4 address, so one host counts once whichever socket
 *   it reached;
 * - a link-local IPv6 address (fe80::/10): the whole address with its zone
 *   (`fe80:0:0:0:0:0:0:1%eth0`), since every host on a link shares fe80::/64;
 * - any other IPv6 address: its /64 prefix (`2001:db8:0:0::/64`), followed
 *   by the zone when there is one. A host is routinely given a whole /64 and
 *   picks addresses in it at will (privacy addresses), so an address-per-key
 *   limit would be no limit at all. (Hosts of one LAN that share a /64 count
 *   as one peer: raise `maxSessionsPerPeer` where many clients share one.)
 *
 * Text that is not an address is its own key. IPv4 (the common case) is
 * returned as it is, without allocating.
 */
export function peerKey(address: string): string {
  if (address.indexOf(":") < 0) return address;
  const pct = address.indexOf("%");
  const bare = pct < 0 ? address : address.slice(0, pct);
  const g = ipv6Groups(bare);
  if (g === null) return address;
  const v4 = mappedIPv4(g);
  if (v4 !== null) return v4;
  const zone = pct < 0 ? "" : address.slice(pct);
  if ((g[0]! & 0xffc0) === 0xfe80) {
    // Link-local: every host on a link shares fe80::/64, so the prefix says nothing about who it is.
    return `${g.map((x) => x.toString(16)).join(":")}${zone}`;
  }
  return `${g[0]!.toString(16)}:${g[1]!.toString(16)}:${g[2]!.toString(16)}:${g[3]!.toString(16)}::/64${zone}`;
}
