import * as packet from "@leichtgewicht/dns-packet";
import dgram from "node:dgram";
import type { Logger } from "../logger.ts";
import { answersFor, addressesFor, type LinkAddress, type ServiceRecords } from "./dnssd_records.ts";
import { RateLimiter } from "./rate_limiter.ts";

/** RFC 6762: 224.0.0.251 and ff02::fb, port 5353. */
const GROUP4 = "224.0.0.251";
const GROUP6 = "ff02::fb";
export const MDNS_PORT = 5353;

/** The responder's budgets: what any datagram from the link may cost. */
export interface ResponderLimits {
  /** Larger datagrams are dropped unread (RFC 6762 §17: 9000 bytes at most). */
  maxDatagramBytes: number;
  /** Questions read from one query; the rest are ignored. */
  maxQuestions: number;
  /** Answers sent per second, all sources together (and a fifth of it per source). */
  answersPerSecond: number;
  /** The same records multicast on one link at most once per this many ms (RFC 6762 §6: one second). */
  multicastIntervalMs: number;
}

/** Known answers (and other records) a query may carry before it is dropped unread (§7.1 lists what the asker holds). */
const MAX_KNOWN_ANSWERS = 32;

export const DEFAULT_RESPONDER_LIMITS: ResponderLimits = { maxDatagramBytes: 9000, maxQuestions: 8, answersPerSecond: 20, multicastIntervalMs: 1000 };

export interface ResponderCounters {
  /** Every datagram read, each then counted once more: dropped (oversize, malformed), a response (ignored) or a query. */
  datagrams: number;
  /** Other responders' answers: read, not used (no conflict handling). */
  responses: number;
  queries: number;
  answers: number;
  dropped: { oversize: number; malformed: number; offLink: number; rateLimited: number };
}

export interface DnssdResponderOptions {
  records: ServiceRecords;
  /** The addresses to advertise, asked again at `changed()`. */
  addresses: () => LinkAddress[];
  log: Logger;
  limits?: Partial<ResponderLimits>;
  /** The mDNS port (tests only). */
  port?: number;
}

/**
 * A small mDNS responder (RFC 6762) for one DNS-SD service (RFC 6763): it
 * answers PTR queries for `_perilink._tcp.local` and for the service
 * enumeration name, and SRV, TXT, A and AAAA queries for its own names, with
 * the addresses of the link the query came from. A query from port 5353 is
 * answered by multicast (unicast when it sets the QU bit), one from another
 * port as legacy unicast (§6.7: same id and question, short TTLs).
 *
 * Every datagram is held to a budget: oversized ones dropped unread,
 * malformed ones and queries from off the link dropped (§11) and counted,
 * at most `maxQuestions` read, answers under a per-source and a global rate,
 * the same multicast answer once per second per link. It announces twice on
 * start (§8.3) and sends a goodbye (TTL 0, §10.1) on `close(true)`; it does
 * not probe for name conflicts (§8.1): the instance is the device's host name.
 */
export class DnssdResponder {
  #o: DnssdResponderOptions;
  #limits: ResponderLimits;
  #sockets: { family: 4 | 6; sock: dgram.Socket }[] = [];
  #addresses: LinkAddress[] = [];
  #joined = new Set<string>();
  #lastMulticast = new Map<string, number>();
  #rate: RateLimiter;
  /** Queries decoded, per source and in all: the decoder's work is bounded before it starts. */
  #reads: RateLimiter;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #closed = false;
  readonly counters: ResponderCounters = { datagrams: 0, responses: 0, queries: 0, answers: 0, dropped: { oversize: 0, malformed: 0, offLink: 0, rateLimited: 0 } };

  constructor(o: DnssdResponderOptions) {
    this.#o = o;
    this.#limits = { ...DEFAULT_RESPONDER_LIMITS, ...o.limits };
    const rate = this.#limits.answersPerSecond;
    this.#reads = new RateLimiter({ ratePerSecond: Math.max(1, rate), burst: Math.max(1, rate), maxSources: 256, globalRatePerSecond: 5 * rate, globalBurst: 5 * rate });
    this.#rate = new RateLimiter({ ratePerSecond: Math.max(1, rate / 5), burst: Math.max(1, rate / 5), maxSources: 256, globalRatePerSecond: rate, globalBurst: rate });
  }

  get #port(): number {
    return this.#o.port ?? MDNS_PORT;
  }

  /** Binds the mDNS port (shared: SO_REUSEADDR) for each family with an address, joins the groups and announces. */
  async start(): Promise<void> {
    this.#addresses = this.#o.addresses();
    await this.#bindFamilies();
    this.#join();
    this.#announce();
  }

  /** A socket for each family the addresses have and no socket has yet (an address may come after start: DHCP, SLAAC). */
  async #bindFamilies(): Promise<void> {
    for (const family of [4, 6] as const) {
      if (!this.#addresses.some((a) => a.family === family) || this.#sockets.some((s) => s.family === family)) continue;
      const sock = dgram.createSocket({ type: family === 4 ? "udp4" : "udp6", reuseAddr: true, ...(family === 6 ? { ipv6Only: true } : {}) });
      try {
        await new Promise<void>((resolve, reject) => {
          sock.once("error", reject);
          sock.bind(this.#port, family === 4 ? "0.0.0.0" : "::", () => {
            sock.off("error", reject);
            resolve();
          });
        });
      } catch (err) {
        sock.close();
        this.#o.log.warn("mdns_bind_failed", { family, port: this.#port, error: (err as Error).message });
        continue;
      }
      sock.on("error", (err) => this.#o.log.warn("mdns_socket_error", { family, error: err.message }));
      sock.on("message", (msg, rinfo) => this.#onDatagram(sock, family, msg, rinfo));
      try {
        sock.setMulticastTTL(255);
      } catch {
        // the default TTL still reaches the link
      }
      if (this.#closed) {
        sock.close();
        return;
      }
      this.#sockets.push({ family, sock });
    }
  }

  /** The addresses may have changed (a listener came or went): join new links and announce again. */
  changed(): void {
    if (this.#closed) return;
    const before = this.#addresses.map((a) => a.address).sort().join(" ");
    this.#addresses = this.#o.addresses();
    if (this.#addresses.map((a) => a.address).sort().join(" ") === before) return;
    void this.#bindFamilies().then(() => {
      if (this.#closed) return;
      this.#join();
      this.#announce();
    });
  }

  /** Stops answering; with `goodbye`, first tells the links the records are gone (not after a handover: the new process advertises). */
  async close(goodbye: boolean): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    if (goodbye) await Promise.all(this.#multicastAll(true));
    for (const { sock } of this.#sockets) sock.close();
    this.#sockets = [];
  }

  #join(): void {
    for (const { family, sock } of this.#sockets) {
      for (const a of this.#addresses) {
        const key = `${family} ${a.iface}`;
        if (a.family !== family || this.#joined.has(key)) continue;
        try {
          if (family === 4) sock.addMembership(GROUP4, a.address);
          else sock.addMembership(GROUP6, `::%${a.iface}`);
          this.#joined.add(key);
        } catch (err) {
          this.#o.log.debug("mdns_join_failed", { iface: a.iface, family, error: (err as Error).message });
        }
      }
    }
  }

  /** Two unsolicited announcements one second apart (RFC 6762 §8.3). */
  #announce(): void {
    void Promise.all(this.#multicastAll(false));
    const t = setTimeout(() => {
      this.#timers.delete(t);
      void Promise.all(this.#multicastAll(false));
    }, 1000);
    t.unref?.();
    this.#timers.add(t);
  }

  /** Every record, multicast on every link (once per interface and family). */
  #multicastAll(goodbye: boolean): Promise<void>[] {
    const sent: Promise<void>[] = [];
    for (const { family, sock } of this.#sockets) {
      const links = new Map<string, LinkAddress[]>();
      for (const a of this.#addresses) links.set(a.iface, [...(links.get(a.iface) ?? []), a]);
      for (const [iface, addrs] of links) {
        const own = addrs.find((a) => a.family === family);
        if (!own) continue;
        const { answers } = answersFor(null, this.#o.records, addrs, { legacy: false, goodbye });
        sent.push(this.#sendMulticast(sock, family, iface, own.address, { type: "response", id: 0, flags: packet.AUTHORITATIVE_ANSWER, answers }));
      }
    }
    return sent;
  }

  #sendMulticast(sock: dgram.Socket, family: 4 | 6, iface: string, own: string, p: packet.Packet): Promise<void> {
    return new Promise((resolve) => {
      try {
        sock.setMulticastInterface(family === 4 ? own : `::%${iface}`);
        sock.send(packet.encode(p), this.#port, family === 4 ? GROUP4 : `${GROUP6}%${iface}`, () => resolve());
      } catch {
        resolve(); // an interface that went away
      }
    });
  }

  #onDatagram(sock: dgram.Socket, family: 4 | 6, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.#closed) return;
    this.counters.datagrams++;
    if (msg.length > this.#limits.maxDatagramBytes) {
      this.counters.dropped.oversize++;
      return;
    }
    // Everything that costs nothing first, decoding last (a name of many compression pointers costs
    // the decoder time): the header's QR bit and counts, the source's link, the datagram budget.
    if (msg.length < 12) {
      this.counters.dropped.malformed++;
      return;
    }
    if ((msg[2]! & 0x80) !== 0) {
      this.counters.responses++; // another responder's answer: no conflict handling here
      return;
    }
    const links = addressesFor(rinfo.address, this.#addresses);
    if (links.length === 0) {
      this.counters.dropped.offLink++;
      return;
    }
    const qd = msg.readUInt16BE(4);
    const records = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10);
    if (qd === 0 || qd > this.#limits.maxQuestions || records > MAX_KNOWN_ANSWERS) {
      this.counters.dropped.malformed++;
      return;
    }
    if (!this.#reads.take(rinfo.address)) {
      this.counters.dropped.rateLimited++;
      return;
    }
    let q: packet.Packet;
    try {
      q = packet.decode(msg);
      // The decoder reads past the end of a truncated message instead of failing: refuse it.
      if (((packet.decode as unknown as { bytes?: number }).bytes ?? Infinity) > msg.length) throw new Error("truncated");
    } catch {
      this.counters.dropped.malformed++;
      return;
    }
    this.counters.queries++;
    const questions = (q.questions ?? []).slice(0, this.#limits.maxQuestions);
    const legacy = rinfo.port !== this.#port;
    const { answers, additionals } = answersFor(questions, this.#o.records, links, { legacy });
    // Known-answer suppression (§7.1): the asker already holds our PTR.
    const known = (q.answers ?? []).some((a) => a.type === "PTR" && typeof a.data === "string" && a.data.toLowerCase() === this.#o.records.instanceName.toLowerCase() && (a.ttl ?? 0) > 2250);
    const fresh = known ? answers.filter((a) => a.type !== "PTR") : answers;
    if (fresh.length === 0) return;
    // The QU bit (§5.4) is the top bit of the class, which the decoder leaves in the class name.
    const qu = questions.some((x) => /^UNKNOWN_(\d+)$/.test(String(x.class)) && (Number(String(x.class).slice(8)) & 0x8000) !== 0);
    const key = !legacy && !qu ? `${links[0]!.iface} ${family} ${fresh.map((a) => `${a.type} ${a.name}`).join(",")}` : null;
    const now = Date.now();
    if (key !== null && now - (this.#lastMulticast.get(key) ?? -Infinity) < this.#limits.multicastIntervalMs) {
      this.counters.dropped.rateLimited++;
      return;
    }
    if (!this.#rate.take(`${rinfo.address}`)) {
      this.counters.dropped.rateLimited++;
      return;
    }
    // Stamped only once the answer goes: one the limiter dropped does not silence the next asker.
    if (key !== null) {
      if (this.#lastMulticast.size > 256) this.#lastMulticast.clear();
      this.#lastMulticast.set(key, now);
    }
    this.counters.answers++;
    const reply: packet.Packet = {
      type: "response",
      id: legacy ? q.id : 0,
      flags: packet.AUTHORITATIVE_ANSWER,
      ...(legacy ? { questions: questions.map((x) => ({ name: x.name, type: x.type, class: "IN" as const })) } : {}),
      answers: fresh,
      additionals,
    };
    if (legacy || qu) {
      try {
        sock.send(packet.encode(reply), rinfo.port, rinfo.address);
      } catch {
        // a source that went away
      }
      return;
    }
    const own = links.find((a) => a.family === family);
    if (own) void this.#sendMulticast(sock, family, own.iface, own.address, reply);
  }
}
