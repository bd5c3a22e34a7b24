import * as packet from "@leichtgewicht/dns-packet";
import { randomInt } from "node:crypto";
import net from "node:net";
import type { NameAnswer } from "./name_types.ts";
import { distinctAnswers, normalizeName } from "./name_types.ts";
import { ipv6Groups, stripZone } from "../../address.ts";

/** The one DNS wire format of unicast DNS, LLMNR (RFC 4795) and mDNS (RFC 6762). */

export type AddressType = "A" | "AAAA";

/** A query for one question. `recursion` for unicast DNS; LLMNR and mDNS leave it clear. */
export function encodeQuery(id: number, name: string, type: AddressType | "PTR", recursion: boolean): Uint8Array {
  return packet.encode({
    type: "query",
    id,
    flags: recursion ? packet.RECURSION_DESIRED : 0,
    questions: [{ type, name, class: "IN" }],
  });
}

/**
 * Decodes a response to our query, or returns null when it is not one: not
 * decodable, truncated, a query, another transaction id, another question.
 * Never throws.
 */
function ourResponse(buf: Uint8Array, id: number, name: string, type: string): packet.Packet | null {
  let p: packet.Packet;
  try {
    p = packet.decode(buf);
  } catch {
    return null;
  }
  // The decoder reads past the end of a truncated message (undefined bytes) instead of failing: refuse it.
  if (((packet.decode as unknown as { bytes?: number }).bytes ?? Infinity) > buf.length) return null;
  if (p.type !== "response") return null;
  // Every answer must repeat the query's id and its one question (RFC 6762 §6.7 asks the same of
  // legacy-unicast mDNS answers): one without them may be meant for anyone, or forged.
  if (p.id !== id) return null;
  const q = p.questions ?? [];
  if (q.length !== 1 || q[0]!.type !== type || normalizeName(q[0]!.name) !== normalizeName(name)) return null;
  return p;
}

/**
 * The addresses in a response for `name` (A or AAAA records of that name,
 * following CNAMEs inside the message), or null when the message is not a
 * response to this query (the same rule for DNS, LLMNR and mDNS).
 */
export function readAddresses(buf: Uint8Array, id: number, name: string, type: AddressType): NameAnswer[] | null {
  const p = ourResponse(buf, id, name, type);
  if (!p) return null;
  if (rcode(p) !== 0) return []; // NXDOMAIN, SERVFAIL, REFUSED…: this server's answer is "none"
  const records = [...(p.answers ?? []), ...(p.additionals ?? [])];
  const names = new Set([normalizeName(name)]);
  for (let i = 0; i < 8; i++) {
    let grew = false;
    for (const r of records) {
      if (r.type === "CNAME" && names.has(normalizeName(r.name)) && typeof r.data === "string" && !names.has(normalizeName(r.data))) {
        names.add(normalizeName(r.data));
        grew = true;
      }
    }
    if (!grew) break;
  }
  return distinctAnswers(addressRecords(records, names, type));
}

/** The address records of `type` for `names` in `records`, as they come (read lazily: an answer may list thousands). */
function* addressRecords(records: packet.Answer[], names: Set<string>, type: AddressType): Generator<NameAnswer> {
  for (const r of records) {
    if (r.type !== type || !names.has(normalizeName(r.name)) || typeof r.data !== "string") continue;
    if (net.isIP(r.data) === (type === "A" ? 4 : 6)) yield { address: r.data, ttl: clampTtl(r.ttl) };
  }
}

/** The names in a PTR response for `reverse` (an in-addr.arpa / ip6.arpa name), or null when not our response. */
export function readPointers(buf: Uint8Array, id: number, reverse: string): { name: string; ttl: number }[] | null {
  const p = ourResponse(buf, id, reverse, "PTR");
  if (!p) return null;
  if (rcode(p) !== 0) return [];
  const out: { name: string; ttl: number }[] = [];
  for (const r of p.answers ?? []) {
    if (r.type !== "PTR" || normalizeName(r.name) !== normalizeName(reverse) || typeof r.data !== "string" || r.data.length === 0) continue;
    out.push({ name: normalizeName(r.data), ttl: clampTtl(r.ttl) });
  }
  return out;
}

/**
 * The records (answers, then additionals, at most `maxRecords`) of a
 * response to our query for `name`/`type`, or null when it is not one. For
 * DNS-SD browsing, which reads PTR, SRV, TXT and address records together.
 */
export function readRecords(buf: Uint8Array, id: number, name: string, type: string, maxRecords: number): packet.Answer[] | null {
  const p = ourResponse(buf, id, name, type);
  if (!p || rcode(p) !== 0) return p ? [] : null;
  return [...(p.answers ?? []), ...(p.additionals ?? [])].slice(0, maxRecords);
}

/** The reverse-lookup name of a numeric address: `4.3.2.1.in-addr.arpa`, or nibbles under `ip6.arpa`. */
export function reverseName(address: string): string {
  const a = stripZone(address);
  if (net.isIPv4(a)) return `${a.split(".").reverse().join(".")}.in-addr.arpa`;
  const bytes = ipv6Bytes(a);
  const nibbles: string[] = [];
  for (let i = bytes.length - 1; i >= 0; i--) nibbles.push((bytes[i]! & 0xf).toString(16), (bytes[i]! >> 4).toString(16));
  return `${nibbles.join(".")}.ip6.arpa`;
}

function ipv6Bytes(a: string): number[] {
  return (ipv6Groups(a) ?? new Array<number>(8).fill(0)).flatMap((g) => [g >> 8, g & 0xff]);
}

function rcode(p: packet.Packet): number {
  return (p.flags ?? 0) & 0x000f;
}

/** DNS TTLs are unsigned 32-bit; a value above 2^31 is treated as 0 (RFC 2181 §8). */
function clampTtl(ttl: number | undefined): number {
  return ttl === undefined || !Number.isFinite(ttl) || ttl < 0 || ttl > 0x7fffffff ? 0 : Math.floor(ttl);
}

/** A fresh 16-bit transaction id. */
export function transactionId(): number {
  return randomInt(0, 0x10000);
}
