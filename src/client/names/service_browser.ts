import type * as packet from "@leichtgewicht/dns-packet";
import net from "node:net";
import { decodeTxt, SERVICE_TYPE, type ServiceTxt } from "../../protocol/dnssd.ts";
import { isLinkLocal, zoneOf } from "../../address.ts";
import { encodeQuery, readRecords, transactionId } from "./dns_message.ts";
import { isOnLink, type Route } from "./interfaces.ts";
import { normalizeName } from "./name_types.ts";
import { udpExchange } from "./udp_exchange.ts";

/** One DNS-SD instance of `_perilink._tcp` as a responder described it: claims, until probed. */
export interface FoundInstance {
  /** The instance label (`kitchen-pi`), as the network sent it. */
  name: string;
  host: string;
  port: number;
  txt: Partial<ServiceTxt>;
  /** Its addresses from the answer's A/AAAA records (an IPv6 link-local one with the zone it came through). */
  addresses: string[];
  /** Who answered. */
  from: string;
}

export interface BrowseOptions {
  timeoutMs: number;
  /** Instances kept, over every route (a flood of answers is not). */
  maxInstances?: number;
  signal?: AbortSignal;
}

export const DEFAULT_MAX_INSTANCES = 64;
/** Records read from one answer, and addresses kept per instance. */
const MAX_RECORDS_PER_ANSWER = 64;
const MAX_ADDRESSES_PER_INSTANCE = 8;

/**
 * Browses `_perilink._tcp.local` (RFC 6763 §4): one PTR query per route,
 * legacy unicast from an ephemeral port (RFC 6762 §6.7, as the mDNS name
 * source asks, so avahi on this host keeps its port), answers gathered for
 * the whole timeout. An answer counts only from port 5353 of a source on the
 * link the query went out on, repeating our id and question; an instance
 * counts only with its SRV and at least one address in the same answer.
 */
export async function browseInstances(routes: readonly Route[], o: BrowseOptions): Promise<FoundInstance[]> {
  const max = o.maxInstances ?? DEFAULT_MAX_INSTANCES;
  const found = await Promise.all(
    routes.map((route) => {
      const id = transactionId();
      return udpExchange({
        family: route.family,
        bind: route.bind,
        targets: [route.target],
        message: encodeQuery(id, SERVICE_TYPE, "PTR", false),
        timeoutMs: o.timeoutMs,
        gatherMs: o.timeoutMs, // every responder answers: listen to the end
        maxAnswers: max,
        attempts: 2,
        multicastTtl: 255,
        signal: o.signal,
        accept: (msg, from) => {
          if (from.port !== route.target.port || (route.onLink && !isOnLink(from.address, route.onLink, route.ifname))) return undefined;
          const records = readRecords(msg, id, SERVICE_TYPE, "PTR", MAX_RECORDS_PER_ANSWER);
          return records ? instancesIn(records, from.address, route.ifname, route.onLink) : undefined;
        },
      });
    }),
  );
  const out: FoundInstance[] = [];
  for (const i of found.flat(2)) {
    if (out.length >= max) break;
    const same = out.find((x) => x.name === i.name && x.host === i.host && x.port === i.port);
    if (same) same.addresses = [...new Set([...same.addresses, ...i.addresses])].slice(0, MAX_ADDRESSES_PER_INSTANCE);
    else out.push(i);
  }
  return out;
}

/** The instances one answer describes: PTR → SRV (+ TXT) → A/AAAA, all inside the answer. */
function instancesIn(records: packet.Answer[], from: string, ifname: string | undefined, onLink: string[] | undefined): FoundInstance[] {
  const out: FoundInstance[] = [];
  const suffix = `.${SERVICE_TYPE}`;
  for (const ptr of records) {
    if (ptr.type !== "PTR" || normalizeName(ptr.name) !== SERVICE_TYPE || typeof ptr.data !== "string") continue;
    const full = normalizeName(ptr.data);
    if (!full.endsWith(suffix) || (ptr.ttl ?? 0) === 0) continue; // a goodbye withdraws it
    const srv = records.find((r) => r.type === "SRV" && normalizeName(r.name) === full);
    if (!srv || srv.type !== "SRV" || !srv.data.port) continue;
    const host = normalizeName(srv.data.target);
    const txt = records.find((r) => r.type === "TXT" && normalizeName(r.name) === full);
    const addresses: string[] = [];
    for (const r of records) {
      if ((r.type !== "A" && r.type !== "AAAA") || normalizeName(r.name) !== host || typeof r.data !== "string" || net.isIP(r.data) === 0) continue;
      const a = isLinkLocal(r.data) && zoneOf(r.data) === "" && ifname ? `${r.data}%${ifname}` : r.data;
      // Only addresses on the link the answer came from: an answer cannot send the probes elsewhere (a scan, a reflection).
      if (onLink && !isOnLink(a, onLink, ifname)) continue;
      if (!addresses.includes(a) && addresses.length < MAX_ADDRESSES_PER_INSTANCE) addresses.push(a);
    }
    if (addresses.length === 0) continue;
    const raw = ptr.data.replace(/\.$/, "");
    out.push({ name: raw.slice(0, raw.length - suffix.length).slice(0, 63), host, port: srv.data.port, txt: txt ? decodeTxt(txt.data) : {}, addresses, from });
  }
  return out;
}
