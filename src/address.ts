import net from "node:net";

/**
 * Address text, in one place for server and client alike: zones, brackets,
 * the canonical spelling, `HOST:PORT`, and the groups of an IPv6 address.
 * Pure functions; nothing here touches a socket.
 */

/** The address without its IPv6 zone: `fe80::1%eth0` → `fe80::1`. */
export function stripZone(address: string): string {
  const pct = address.indexOf("%");
  return pct < 0 ? address : address.slice(0, pct);
}

/** The zone of an IPv6 address (`eth0` of `fe80::1%eth0`), or "" when it has none. */
export function zoneOf(address: string): string {
  const pct = address.indexOf("%");
  return pct < 0 ? "" : address.slice(pct + 1);
}

/** `[fe80::1%eth0]` → `fe80::1%eth0`; anything else as it is. */
export function stripBrackets(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/** Whether the text (with or without zone) is a numeric IPv4 or IPv6 address: 4, 6, or 0 for neither. */
export function addressFamily(address: string): 0 | 4 | 6 {
  return net.isIP(stripZone(address)) as 0 | 4 | 6;
}

/** One spelling per address: lower case, no zone, IPv6 compressed the canonical way, no brackets. */
export function canonicalAddress(address: string): string {
  const a = stripZone(stripBrackets(address)).toLowerCase();
  if (!net.isIPv6(a)) return a;
  try {
    return new URL(`http://[${a}]/`).hostname.slice(1, -1);
  } catch {
    return a;
  }
}

/** Two spellings of one address (zones aside). */
export function sameAddress(a: string, b: string): boolean {
  return canonicalAddress(a) === canonicalAddress(b);
}

/** `address:port` with IPv6 in brackets: the form users write and read. */
export function formatHostPort(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Whether an IPv6 address (zone allowed) is link-local, fe80::/10. */
export function isLinkLocal(address: string): boolean {
  const g = ipv6Groups(stripZone(address));
  return g !== null && (g[0]! & 0xffc0) === 0xfe80;
}

/** The IPv4 address an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as groups) stands for, or null for any other. */
export function mappedIPv4(g: readonly number[]): string | null {
  if (g[0] !== 0 || g[1] !== 0 || g[2] !== 0 || g[3] !== 0 || g[4] !== 0 || g[5] !== 0xffff) return null;
  return `${g[6]! >>> 8}.${g[6]! & 0xff}.${g[7]! >>> 8}.${g[7]! & 0xff}`;
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * The eight 16-bit groups of an IPv6 address without zone (`::` and a
 * trailing dotted quad allowed), or null when the text is not one.
 */
export function ipv6Groups(text: string): number[] | null {
  const gap = text.indexOf("::");
  if (gap >= 0 && text.indexOf("::", gap + 1) >= 0) return null;
  const head = gap < 0 ? text : text.slice(0, gap);
  const tail = gap < 0 ? "" : text.slice(gap + 2);
  const left = head === "" ? [] : groups(head, gap < 0);
  const right = tail === "" ? [] : groups(tail, true);
  if (left === null || right === null) return null;
  const missing = 8 - left.length - right.length;
  if (gap < 0 ? missing !== 0 : missing < 1) return null;
  const out = left;
  for (let i = 0; i < missing; i++) out.push(0);
  for (const v of right) out.push(v);
  return out;
}

/** Groups separated by ":"; the last may be a dotted quad when `lastMayBeIPv4`. */
function groups(part: string, lastMayBeIPv4: boolean): number[] | null {
  const fields = part.split(":");
  const out: number[] = [];
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    if (HEX_GROUP.test(f)) {
      out.push(parseInt(f, 16));
      continue;
    }
    const q = i === fields.length - 1 && lastMayBeIPv4 ? DOTTED_QUAD.exec(f) : null;
    if (q === null) return null;
    const b = [Number(q[1]), Number(q[2]), Number(q[3]), Number(q[4])];
    if (b.some((x) => x > 255)) return null;
    out.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
  }
  return out;
}

/**
 * Whether `address` is on one of `subnets` (`ADDR/PREFIX`), or an IPv6
 * link-local address when a subnet is IPv6 — and then, when both zones are
 * known, of this interface (`ifname`): a link-local source on another link is not on this one.
 */
export function isOnLink(address: string, subnets: readonly string[], ifname?: string): boolean {
  const a = bits(stripZone(address));
  if (a === null) return false;
  if (a.length === 128 && isLinkLocal(address)) {
    const zone = address.includes("%") ? address.slice(address.indexOf("%") + 1) : "";
    return subnets.some((s) => s.includes(":")) && (zone === "" || ifname === undefined || zone === ifname);
  }
  for (const s of subnets) {
    const slash = s.indexOf("/");
    const net = bits(slash < 0 ? s : s.slice(0, slash));
    const prefix = slash < 0 ? (net?.length ?? 0) : Number(s.slice(slash + 1));
    if (net === null || net.length !== a.length || !(prefix >= 0 && prefix <= net.length)) continue;
    if (a.slice(0, prefix) === net.slice(0, prefix)) return true;
  }
  return false;
}

/** An address as a string of 32 or 128 bits, or null. */
function bits(address: string): string | null {
  const quads = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(address);
  if (quads) return quads.slice(1).map((q) => Number(q).toString(2).padStart(8, "0")).join("");
  const g = ipv6Groups(address);
  return g === null ? null : g.map((x) => x.toString(2).padStart(16, "0")).join("");
}
