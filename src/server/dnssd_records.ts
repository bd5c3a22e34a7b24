import type * as packet from "@leichtgewicht/dns-packet";
import os from "node:os";
import { isOnLink, stripZone } from "../address.ts";
import { SERVICE_TYPE, SERVICES_ENUMERATION } from "../protocol/dnssd.ts";

/** One address the responder advertises, with the interface (and its subnet) it is on. */
export interface LinkAddress {
  address: string;
  family: 4 | 6;
  iface: string;
  /** `ADDR/PREFIX` of the interface's subnet. */
  cidr: string;
}

/** What one server advertises: its instance, host name, main port and TXT. */
export interface ServiceRecords {
  /** `<instance>._perilink._tcp.local`. */
  instanceName: string;
  /** `<host>.local`, the SRV target. */
  host: string;
  port: number;
  txt: string[];
}

/** RFC 6762 §10: 120 s for records naming a host (SRV, A, AAAA), 4500 s for the others (PTR, TXT). */
const HOST_TTL = 120;
const OTHER_TTL = 4500;

/**
 * The non-loopback interface addresses the listeners cover: an endpoint on a
 * wildcard address covers every interface; one on an address covers that
 * address's interface. Each address once.
 */
export function linkAddresses(listening: readonly { address: string }[], interfaces = os.networkInterfaces()): LinkAddress[] {
  const out: LinkAddress[] = [];
  const wild4 = listening.some((l) => l.address === "0.0.0.0");
  const wild6 = listening.some((l) => l.address === "::");
  const bound = new Set(listening.map((l) => stripZone(l.address).toLowerCase()));
  for (const [iface, infos] of Object.entries(interfaces)) {
    for (const i of infos ?? []) {
      if (i.internal || !i.cidr) continue;
      const family = i.family === "IPv6" ? 6 : 4;
      const address = i.address.toLowerCase();
      if (!(family === 4 ? wild4 : wild6) && !bound.has(address)) continue;
      if (!out.some((o) => o.address === address)) out.push({ address, family, iface, cidr: i.cidr });
    }
  }
  return out;
}

/** The addresses on the link `source` is on (its interface's subnets; an IPv6 link-local source by its zone). */
export function addressesFor(source: string, all: readonly LinkAddress[]): LinkAddress[] {
  const ifaces = new Set<string>();
  for (const a of all) if (isOnLink(source, [a.cidr], a.iface)) ifaces.add(a.iface);
  return all.filter((a) => ifaces.has(a.iface));
}

export interface AnswerOptions {
  /** Legacy unicast (RFC 6762 §6.7): TTLs at most 10 s, no cache-flush bits. */
  legacy: boolean;
  /** Goodbye (§10.1): every TTL 0. */
  goodbye?: boolean;
}

/**
 * The answers and additional records for the questions asked (all of them
 * when `questions` is null: an announcement), for addresses on one link.
 * Empty answers: nothing of ours was asked.
 */
export function answersFor(
  questions: readonly packet.Question[] | null,
  rec: ServiceRecords,
  addresses: readonly LinkAddress[],
  o: AnswerOptions,
): { answers: packet.Answer[]; additionals: packet.Answer[] } {
  const ttl = (t: number): number => (o.goodbye ? 0 : o.legacy ? Math.min(t, 10) : t);
  // The cache-flush bit (§10.2) on our unique records; the codec reads `flush`, its types do not list it.
  const f = (r: packet.Answer): packet.Answer => (o.legacy ? r : Object.assign(r, { flush: true }));
  const ptr: packet.Answer = { type: "PTR", name: SERVICE_TYPE, ttl: ttl(OTHER_TTL), data: rec.instanceName };
  const srv = f({ type: "SRV", name: rec.instanceName, ttl: ttl(HOST_TTL), data: { target: rec.host, port: rec.port, priority: 0, weight: 0 } });
  const txt = f({ type: "TXT", name: rec.instanceName, ttl: ttl(OTHER_TTL), data: rec.txt });
  const addr = (family: 4 | 6): packet.Answer[] =>
    addresses
      .filter((a) => a.family === family)
      .map((a) => f(family === 4 ? { type: "A", name: rec.host, ttl: ttl(HOST_TTL), data: a.address } : { type: "AAAA", name: rec.host, ttl: ttl(HOST_TTL), data: stripZone(a.address) }));
  const hostRecords = [...addr(4), ...addr(6)];
  if (questions === null) return { answers: [ptr, srv, txt, ...hostRecords], additionals: [] };
  const answers: packet.Answer[] = [];
  const add = (list: packet.Answer[], r: packet.Answer): void => {
    if (!answers.includes(r) && !list.includes(r)) list.push(r);
  };
  const extra: packet.Answer[] = [];
  for (const q of questions) {
    const name = q.name.toLowerCase().replace(/\.$/, "");
    const any = q.type === "ANY";
    if (name === SERVICE_TYPE && (any || q.type === "PTR")) {
      add(answers, ptr);
      for (const r of [srv, txt, ...hostRecords]) add(extra, r);
    } else if (name === SERVICES_ENUMERATION && (any || q.type === "PTR")) {
      add(answers, { type: "PTR", name: SERVICES_ENUMERATION, ttl: ttl(OTHER_TTL), data: SERVICE_TYPE });
    } else if (name === rec.instanceName.toLowerCase()) {
      if (any || q.type === "SRV") add(answers, srv);
      if (any || q.type === "TXT") add(answers, txt);
      for (const r of hostRecords) add(extra, r);
    } else if (name === rec.host) {
      for (const r of hostRecords) if (any || r.type === q.type) add(answers, r);
    }
  }
  return { answers, additionals: answers.length === 0 ? [] : extra.filter((r) => !answers.includes(r)) };
}

