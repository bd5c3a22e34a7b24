import net from "node:net";
import { encodeQuery, readAddresses, readPointers, reverseName, transactionId, type AddressType } from "./dns_message.ts";
import type { Endpoint, NameAnswer, NameSource, QueryContext } from "./name_types.ts";
import { udpExchange } from "./udp_exchange.ts";
import { sameAddress } from "../../address.ts";

/**
 * Unicast DNS (A and AAAA in parallel) against the configured name servers,
 * and PTR for reverse lookups. An answer counts only when it comes from the
 * server that was asked (address and port), carries our transaction id and
 * repeats our question. Servers are asked one after the other; the first
 * that answers decides.
 */
export class DnsSource implements NameSource {
  readonly name = "dns" as const;
  #servers: Endpoint[];

  constructor(servers: Endpoint[]) {
    this.#servers = servers;
  }

  accepts(name: string): boolean {
    return this.#servers.length > 0 && net.isIP(name) === 0;
  }

  async resolve(name: string, ctx: QueryContext): Promise<NameAnswer[]> {
    const [a, aaaa] = await Promise.all([this.#ask(name, "A", ctx), this.#ask(name, "AAAA", ctx)]);
    return [...a, ...aaaa];
  }

  /** The names a numeric address points back to (PTR). */
  async reverse(address: string, ctx: QueryContext): Promise<{ name: string; ttl: number }[]> {
    const rev = reverseName(address);
    for (const server of this.#servers) {
      const id = transactionId();
      const got = await udpExchange({
        family: net.isIPv6(server.address) ? 6 : 4,
        targets: [server],
        message: encodeQuery(id, rev, "PTR", true),
        timeoutMs: ctx.timeoutMs,
        attempts: 2,
        gatherMs: 0,
        signal: ctx.signal,
        accept: (msg, from) => (fromServer(from, server) ? (readPointers(msg, id, rev) ?? undefined) : undefined),
      });
      if (got[0]) return got[0];
    }
    return [];
  }

  async #ask(name: string, type: AddressType, ctx: QueryContext): Promise<NameAnswer[]> {
    for (const server of this.#servers) {
      const id = transactionId();
      const got = await udpExchange({
        family: net.isIPv6(server.address) ? 6 : 4,
        targets: [server],
        message: encodeQuery(id, name, type, true),
        timeoutMs: ctx.timeoutMs,
        attempts: 2,
        gatherMs: 0,
        signal: ctx.signal,
        accept: (msg, from) => (fromServer(from, server) ? (readAddresses(msg, id, name, type) ?? undefined) : undefined),
      });
      if (got[0]) return got[0]; // an answer (possibly "no such record") from this server decides
    }
    return [];
  }
}

function fromServer(from: { address: string; port: number }, server: Endpoint): boolean {
  return from.port === server.port && sameAddress(from.address, server.address);
}


