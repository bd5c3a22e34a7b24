import { promises as dns } from "node:dns";
import net from "node:net";
import type { NameAnswer, NameSource, QueryContext } from "./name_types.ts";

/**
 * The system resolver: getaddrinfo through `dns.lookup` with `all: true`, so
 * /etc/hosts, /etc/resolv.conf and nsswitch decide. It reports no TTL: its
 * answers are kept `ttlSeconds`. An error (not found, no resolver) is an empty answer.
 */
export class SystemSource implements NameSource {
  readonly name = "hosts" as const;
  #ttl: number;
  #lookup: typeof dns.lookup;

  constructor(ttlSeconds: number, lookup: typeof dns.lookup = dns.lookup) {
    this.#ttl = ttlSeconds;
    this.#lookup = lookup;
  }

  accepts(name: string): boolean {
    return net.isIP(name) === 0;
  }

  async resolve(name: string, ctx: QueryContext): Promise<NameAnswer[]> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<[]>((r) => {
      timer = setTimeout(() => r([]), ctx.timeoutMs);
      timer.unref?.();
    });
    try {
      const found = this.#lookup(name, { all: true, verbatim: true }).then(
        (list) => list.map((a) => ({ address: a.address, ttl: this.#ttl })),
        () => [] as NameAnswer[],
      );
      return await Promise.race([found, late]);
    } finally {
      clearTimeout(timer);
    }
  }
}
