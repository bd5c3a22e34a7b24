/**
 * RFC 6724 destination order, for addresses whose lines score the same:
 * rule 6 (higher precedence in the default policy table) and rule 8
 * (smaller scope first). Rules that need the source address or the
 * kernel's state (1–5, 7, 9) are not applied; stable otherwise.
 */
import net from "node:net";
import { ipv6Groups, stripZone } from "../../address.ts";

interface Policy {
  prefix: bigint;
  bits: number;
  precedence: number;
}

function v6(text: string): bigint {
  let n = 0n;
  for (const g of ipv6Groups(text) ?? []) n = (n << 16n) | BigInt(g);
  return n;
}

/** The default policy table (RFC 6724 §2.1), longest prefix first. */
const TABLE: Policy[] = (
  [
    ["::1", 128, 50],
    ["::ffff:0:0", 96, 35],
    ["2002::", 16, 30],
    ["2001::", 32, 5],
    ["fc00::", 7, 3],
    ["::", 96, 1],
    ["fec0::", 10, 1],
    ["3ffe::", 16, 1],
    ["::", 0, 40],
  ] as const
)
  .map(([p, bits, precedence]) => ({ prefix: v6(p), bits, precedence }))
  .sort((a, b) => b.bits - a.bits);

function asV6(address: string): bigint | null {
  const a = stripZone(address);
  if (net.isIPv4(a)) return (0xffffn << 32n) | a.split(".").reduce((n, o) => (n << 8n) | BigInt(Number(o)), 0n);
  return ipv6Groups(a) === null ? null : v6(a);
}

function precedence(n: bigint): number {
  for (const p of TABLE) {
    const shift = BigInt(128 - p.bits);
    if (p.bits === 0 || n >> shift === p.prefix >> shift) return p.precedence;
  }
  return 40;
}

/** Scope as RFC 4007 numbers it: 2 link-local, 5 site-local, 14 global. */
function scope(n: bigint, isV4: boolean): number {
  if (isV4) {
    const a = Number(n & 0xffffffffn);
    if (a >>> 24 === 127 || a >>> 16 === 0xa9fe) return 2;
    return 14;
  }
  if (n === 1n || n >> 118n === 0x3fan) return 2; // ::1, fe80::/10
  if (n >> 118n === 0x3fbn) return 5; // fec0::/10
  return 14;
}

/** Negative when `a` comes first. Names (not numeric) keep their place. */
export function compareDestinations(a: string, b: string): number {
  const x = asV6(a);
  const y = asV6(b);
  if (x === null || y === null) return 0;
  const px = precedence(x);
  const py = precedence(y);
  if (px !== py) return py - px;
  return scope(x, net.isIPv4(stripZone(a))) - scope(y, net.isIPv4(stripZone(b)));
}
