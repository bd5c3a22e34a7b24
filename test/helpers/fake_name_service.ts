import * as packet from "@leichtgewicht/dns-packet";
import dgram from "node:dgram";
import net from "node:net";
import { after } from "node:test";

export interface Query {
  msg: Buffer;
  from: dgram.RemoteInfo;
  /** The decoded DNS message, or null (NetBIOS, garbage). */
  dns: packet.Packet | null;
}

/**
 * A name service on loopback that answers with whatever `reply` returns for
 * each query: a list of datagrams (sent back from its own socket, or from
 * `other` when asked: an answer from an unexpected source), or nothing.
 */
export class FakeNameService {
  readonly queries: Query[] = [];
  #sock: dgram.Socket;
  #other: dgram.Socket;
  reply: (q: Query) => { data: Uint8Array; fromOther?: boolean }[] = () => [];

  constructor(family: 4 | 6 = 4) {
    this.#sock = dgram.createSocket(family === 6 ? "udp6" : "udp4");
    this.#other = dgram.createSocket(family === 6 ? "udp6" : "udp4");
  }

  async start(host = "127.0.0.1"): Promise<this> {
    await new Promise<void>((r) => this.#sock.bind(0, host, () => r()));
    await new Promise<void>((r) => this.#other.bind(0, host, () => r()));
    this.#sock.on("message", (msg, from) => {
      let dns: packet.Packet | null = null;
      try {
        dns = packet.decode(msg);
      } catch {
        dns = null;
      }
      const q = { msg, from, dns };
      this.queries.push(q);
      for (const r of this.reply(q)) (r.fromOther ? this.#other : this.#sock).send(r.data, from.port, from.address);
    });
    after(() => this.close());
    return this;
  }

  get address(): string {
    return this.#sock.address().address;
  }
  get port(): number {
    return this.#sock.address().port;
  }
  /** `ADDR:PORT` for the nameServers option. */
  get endpoint(): string {
    return net.isIPv6(this.address) ? `[${this.address}]:${this.port}` : `${this.address}:${this.port}`;
  }

  close(): void {
    for (const s of [this.#sock, this.#other]) {
      try {
        s.close();
      } catch {
        // closed
      }
    }
  }
}

/** A DNS answer to `q` from a table name → addresses (A and AAAA as the question asks), TTL 60. */
export function answerFrom(table: Record<string, string[]>, q: Query, ttl = 60): Uint8Array {
  const question = q.dns?.questions?.[0];
  const name = question?.name.toLowerCase() ?? "";
  const type = question?.type;
  const answers: packet.Answer[] = [];
  if (type === "PTR") {
    for (const [n, addrs] of Object.entries(table)) {
      for (const a of addrs) if (reverseOf(a) === name) answers.push({ type: "PTR", name: question!.name, ttl, data: n });
    }
  } else {
    for (const a of table[name] ?? []) {
      if ((type === "A" && net.isIPv4(a)) || (type === "AAAA" && net.isIPv6(a))) answers.push({ type, name: question!.name, ttl, data: a });
    }
  }
  return packet.encode({ type: "response", id: q.dns?.id ?? 0, flags: packet.AUTHORITATIVE_ANSWER, questions: question ? [question] : [], answers });
}

function reverseOf(a: string): string {
  return net.isIPv4(a) ? `${a.split(".").reverse().join(".")}.in-addr.arpa` : "";
}
