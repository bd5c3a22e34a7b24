import net from "node:net";
import { encodeQuery, readAddresses, transactionId, type AddressType } from "./dns_message.ts";
import { isOnLink, type Route } from "./interfaces.ts";
import type { NameAnswer, NameSource, QueryContext } from "./name_types.ts";
import { MAX_ADDRESSES_PER_NAME, distinctAnswers, isLocalName, isSingleLabel } from "./name_types.ts";
import { udpExchange } from "./udp_exchange.ts";
import { isLinkLocal, zoneOf } from "../../address.ts";

/** RFC 4795: 224.0.0.252 and ff02::1:3, port 5355. */
export const LLMNR_GROUPS = { v4: { address: "224.0.0.252", port: 5355 }, v6: { address: "ff02::1:3", port: 5355 } } as const;
/** RFC 6762: 224.0.0.251 and ff02::fb, port 5353. */
export const MDNS_GROUPS = { v4: { address: "224.0.0.251", port: 5353 }, v6: { address: "ff02::fb", port: 5353 } } as const;

/**
 * A DNS-format query sent to a multicast group: LLMNR for single-label names
 * (RFC 4795), or mDNS for `.local` names as a one-shot legacy-unicast query
 * (RFC 6762 §6.7: from an ephemeral port, so no bind on 5353 and no clash
 * with a responder on the host; the answer comes back unicast). A and AAAA
 * are asked on every route at once; answers are gathered for a moment after
 * the first, since several responders may answer.
 *
 * Accepted: a response from the service's port and from a source on the
 * link the query went out on (RFC 6762 §11, RFC 4795 §2.5) that carries our
 * transaction id, repeats our question and holds records of the name asked.
 */
export class MulticastSource implements NameSource {
  readonly name: "llmnr" | "mdns";
  #routes: () => Route[];
  #gatherMs: number;

  /** `routes` is asked at each query, so interfaces that come and go are followed. */
  constructor(kind: "llmnr" | "mdns", routes: () => Route[], gatherMs: number) {
    this.name = kind;
    this.#routes = routes;
    this.#gatherMs = gatherMs;
  }

  accepts(name: string): boolean {
    if (net.isIP(name) !== 0) return false;
    return this.name === "llmnr" ? isSingleLabel(name) : isLocalName(name);
  }

  async resolve(name: string, ctx: QueryContext): Promise<NameAnswer[]> {
    const asks: Promise<NameAnswer[][]>[] = [];
    for (const route of this.#routes()) for (const type of ["A", "AAAA"] as const) asks.push(this.#ask(name, type, route, ctx));
    return distinctAnswers((await Promise.all(asks)).flat(2));
  }

  #ask(name: string, type: AddressType, route: Route, ctx: QueryContext): Promise<NameAnswer[][]> {
    const id = transactionId();
    const mdns = this.name === "mdns";
    return udpExchange({
      family: route.family,
      bind: route.bind,
      targets: [route.target],
      message: encodeQuery(id, name, type, false),
      timeoutMs: ctx.timeoutMs,
      maxAnswers: MAX_ADDRESSES_PER_NAME, // each answer holds one address at least
      attempts: 2,
      gatherMs: this.#gatherMs,
      multicastTtl: mdns ? 255 : 1,
      signal: ctx.signal,
      accept: (msg, from) => {
        if (from.port !== route.target.port || (route.onLink && !isOnLink(from.address, route.onLink, route.ifname))) return undefined;
        const got = readAddresses(msg, id, name, type);
        if (!got || got.length === 0) return undefined;
        // A link-local address is only usable with the interface it was learned on.
        return route.ifname === undefined ? got : got.map((a) => (isLinkLocal(a.address) && zoneOf(a.address) === "" ? { ...a, address: `${a.address}%${route.ifname}` } : a));
      },
    });
  }
}
