import net from "node:net";
import { transactionId } from "./dns_message.ts";
import { isOnLink, type Route } from "./interfaces.ts";
import { MAX_ADDRESSES_PER_NAME, distinctAnswers, type NameAnswer, type NameSource, type QueryContext } from "./name_types.ts";
import { decodeNbAnswer, encodeNbQuery, isNetbiosName } from "./netbios_codec.ts";
import { udpExchange } from "./udp_exchange.ts";

/** RFC 1001/1002 name service port. */
export const NETBIOS_NS_PORT = 137;

/**
 * NetBIOS name query, broadcast on the IPv4 subnets of the interfaces in
 * use (port 137), for single-label names of up to 15 characters. Answers
 * must come from port 137 with our transaction id and name; a host that
 * answers on two subnets, or twice, is counted once.
 */
export class NetbiosSource implements NameSource {
  readonly name = "netbios" as const;
  #routes: () => Route[];
  #gatherMs: number;

  constructor(routes: () => Route[], gatherMs: number) {
    this.#routes = routes;
    this.#gatherMs = gatherMs;
  }

  accepts(name: string): boolean {
    return net.isIP(name) === 0 && isNetbiosName(name);
  }

  async resolve(name: string, ctx: QueryContext): Promise<NameAnswer[]> {
    const asks = this.#routes().map((route) => {
      const id = transactionId();
      return udpExchange({
        family: 4,
        bind: route.bind,
        targets: [route.target],
        message: encodeNbQuery(id, name),
        timeoutMs: ctx.timeoutMs,
        maxAnswers: MAX_ADDRESSES_PER_NAME,
        attempts: 3,
        gatherMs: this.#gatherMs,
        broadcast: true,
        signal: ctx.signal,
        accept: (msg, from) =>
          from.port === route.target.port && (!route.onLink || isOnLink(from.address, route.onLink, route.ifname)) ? (decodeNbAnswer(msg, id, name) ?? undefined) : undefined,
      });
    });
    return distinctAnswers((await Promise.all(asks)).flat().flatMap((a) => a.addresses.map((address) => ({ address, ttl: a.ttl }))));
  }
}
