import * as packet from "@leichtgewicht/dns-packet";
import fc from "fast-check";
import assert from "node:assert/strict";
import { test } from "node:test";
import { readAddresses, reverseName } from "../../src/client/names/dns_message.ts";
import { MAX_ADDRESSES_PER_NAME } from "../../src/client/names/name_types.ts";
import { resolveOptions } from "../../src/client/names/resolution_options.ts";
import { DnsSource } from "../../src/client/names/dns_source.ts";
import { MulticastSource } from "../../src/client/names/multicast_source.ts";
import { NameResolver } from "../../src/client/names/name_resolver.ts";
import { decodeNbAnswer, encodeNbQuery, encodeNetbiosName } from "../../src/client/names/netbios_codec.ts";
import { NetbiosSource } from "../../src/client/names/netbios_source.ts";
import { answerFrom, FakeNameService, type Query } from "../helpers/fake_name_service.ts";

const CTX = { timeoutMs: 300 };
const route = (svc: FakeNameService) => [{ family: 4 as const, target: { address: svc.address, port: svc.port } }];

/** A NetBIOS positive answer to `q` (an NB query) with these addresses. */
function nbAnswer(q: Query, addresses: string[], opts: { id?: number; name?: Uint8Array; rcode?: number } = {}): Uint8Array {
  const name = opts.name ?? q.msg.subarray(12, 46);
  const out = Buffer.alloc(12 + name.length + 10 + addresses.length * 6);
  out.writeUInt16BE(opts.id ?? q.msg.readUInt16BE(0), 0);
  out.writeUInt16BE(0x8500 | (opts.rcode ?? 0), 2);
  out.writeUInt16BE(1, 6);
  Buffer.from(name).copy(out, 12);
  let o = 12 + name.length;
  out.writeUInt16BE(0x20, o);
  out.writeUInt16BE(1, o + 2);
  out.writeUInt32BE(300, o + 4);
  out.writeUInt16BE(addresses.length * 6, o + 8);
  o += 10;
  for (const a of addresses) {
    out.writeUInt16BE(0, o);
    a.split(".").forEach((b, i) => out.writeUInt8(Number(b), o + 2 + i));
    o += 6;
  }
  return out;
}

/** A DNS response to `q` with id and question changed as asked. */
function dnsAnswer(q: Query, addresses: string[], opts: { id?: number; name?: string } = {}): Uint8Array {
  const question = q.dns!.questions![0]!;
  const name = opts.name ?? question.name;
  return packet.encode({
    type: "response",
    id: opts.id ?? q.dns!.id!,
    questions: [{ ...question, name }],
    answers: addresses.filter((a) => (question.type === "A") === a.includes(".")).map((a) => ({ type: question.type as "A", name, ttl: 60, data: a })),
  });
}

test("unicast DNS: malformed, truncated, foreign-source and wrong-id answers are ignored and the good one is taken", async () => {
  const dns = await new FakeNameService().start();
  dns.reply = (q) => {
    const good = answerFrom({ "perisrv.test": ["127.0.0.9"] }, q);
    return [
      { data: Buffer.from([1, 2, 3]) },
      { data: good.subarray(0, good.length - 3) },
      { data: dnsAnswer(q, ["127.6.6.6"], { id: (q.dns!.id! + 1) & 0xffff }) },
      { data: dnsAnswer(q, ["127.6.6.7"], { name: "other.test" }) },
      { data: dnsAnswer(q, ["127.6.6.8"]), fromOther: true },
      { data: good },
    ];
  };
  const got = await new DnsSource([{ address: dns.address, port: dns.port }]).resolve("perisrv.test", CTX);
  assert.deepEqual(got.map((a) => a.address), ["127.0.0.9"]);
});

test("unicast DNS: a server that only sends garbage or never answers is a clean miss (PERILINK_NAME_NOT_FOUND) within the deadline", async () => {
  for (const mode of ["garbage", "silent", "wrong id"] as const) {
    const dns = await new FakeNameService().start();
    dns.reply = (q) =>
      mode === "silent" ? [] : mode === "garbage" ? [{ data: Buffer.from("\xff\xff\x80\x00garbage", "latin1") }] : [{ data: dnsAnswer(q, ["127.0.0.9"], { id: (q.dns!.id! ^ 0x5555) & 0xffff }) }];
    const r = new NameResolver({ order: ["dns"], nameServers: [`${dns.address}:${dns.port}`], timeoutMs: 300 });
    const t0 = performance.now();
    await assert.rejects(r.resolve("perisrv.test"), { code: "PERILINK_NAME_NOT_FOUND" }, mode);
    assert.ok(performance.now() - t0 < 1500, `${mode}: ended by the deadline`);
  }
});

test("LLMNR: only an answer from the service port with our id and question counts", async () => {
  const svc = await new FakeNameService().start();
  svc.reply = (q) => [
    { data: dnsAnswer(q, ["127.6.6.6"], { id: (q.dns!.id! + 7) & 0xffff }) },
    { data: dnsAnswer(q, ["127.6.6.7"]), fromOther: true },
    { data: Buffer.from([0, 0]) },
    { data: dnsAnswer(q, ["127.0.0.9", "::9"]) },
  ];
  const src = new MulticastSource("llmnr", () => route(svc), 30);
  assert.equal(src.accepts("perisrv"), true);
  assert.equal(src.accepts("perisrv.test"), false, "LLMNR is for single-label names");
  const got = await src.resolve("perisrv", CTX);
  assert.deepEqual(got.map((a) => a.address).sort(), ["127.0.0.9", "::9"]);
});

test("mDNS legacy unicast: answers for another name are never taken; a silent network is an empty answer", async () => {
  const svc = await new FakeNameService().start();
  svc.reply = (q) => [{ data: dnsAnswer(q, ["127.6.6.6"], { name: "other.local" }) }];
  const src = new MulticastSource("mdns", () => route(svc), 30);
  assert.equal(src.accepts("perisrv.local"), true);
  assert.deepEqual(await src.resolve("perisrv.local", CTX), []);
  svc.reply = (q) => [{ data: dnsAnswer(q, ["127.0.0.9"]) }];
  assert.deepEqual((await src.resolve("perisrv.local", CTX)).map((a) => a.address), ["127.0.0.9"]);
});

test("NetBIOS: wrong id, another name, an error code, foreign source and truncation are ignored; duplicate answers count once", async () => {
  const svc = await new FakeNameService().start();
  svc.reply = (q) => {
    const good = nbAnswer(q, ["127.0.0.9"]);
    return [
      { data: nbAnswer(q, ["127.6.6.1"], { id: (q.msg.readUInt16BE(0) + 1) & 0xffff }) },
      { data: nbAnswer(q, ["127.6.6.2"], { name: encodeNetbiosName("OTHER") }) },
      { data: nbAnswer(q, ["127.6.6.3"], { rcode: 3 }) },
      { data: nbAnswer(q, ["127.6.6.4"]), fromOther: true },
      { data: good.subarray(0, good.length - 2) },
      { data: good },
      { data: good },
    ];
  };
  const src = new NetbiosSource(() => route(svc), 50);
  assert.equal(src.accepts("PERISRV"), true);
  assert.equal(src.accepts("far-too-long-netbios-name"), false);
  const got = await src.resolve("perisrv", CTX);
  assert.deepEqual(got, [{ address: "127.0.0.9", ttl: 300 }]);
});

test("the NetBIOS query is the RFC 1002 broadcast NB query for the name's <20> service", () => {
  const q = Buffer.from(encodeNbQuery(0x1234, "perisrv"));
  assert.equal(q.toString("hex").slice(0, 24), "123401100001000000000000");
  assert.equal(q.subarray(13, 45).toString("latin1"), "FAEFFCEJFDFCFGCACACACACACACACACA");
  assert.equal(q.readUInt16BE(46), 0x20);
});

test("the DNS and NetBIOS codecs never throw and never invent an address, whatever bytes arrive (fuzzed)", () => {
  const query = packet.decode(packet.encode({ type: "query", id: 7, questions: [{ type: "A", name: "perisrv.test" }] }));
  const good = answerFrom({ "perisrv.test": ["127.0.0.9"] }, { msg: Buffer.alloc(0), from: null as never, dns: query });
  const nbQ = { msg: Buffer.from(encodeNbQuery(7, "perisrv")), from: null as never, dns: null };
  const nbGood = nbAnswer(nbQ, ["127.0.0.9"]);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      readAddresses(bytes, 7, "perisrv.test", "A");
      readAddresses(bytes, 7, "perisrv.local", "A");
      decodeNbAnswer(bytes, 7, "perisrv");
    }),
    { numRuns: 3000 },
  );
  // A flipped byte of a good answer yields the good address, or none: never a wrong one for this name.
  const mutate = (base: Uint8Array) =>
    fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 1, max: 255 }), fc.nat(base.length)).map(([i, x, cut]) => {
      const b = Uint8Array.from(base);
      b[i] = b[i]! ^ x;
      return b.subarray(0, Math.max(cut, i + 1));
    });
  // Any well-formed response: addresses only from A records of the name asked, and only for our id and question.
  const names = ["perisrv.test", "other.test", "PeriSrv.Test"];
  const response = fc.record({
    id: fc.constantFrom(7, 8),
    qname: fc.constantFrom(...names),
    answers: fc.array(fc.record({ name: fc.constantFrom(...names), a: fc.ipV4() }), { maxLength: 5 }),
  });
  fc.assert(
    fc.property(response, (r) => {
      const buf = packet.encode({
        type: "response",
        id: r.id,
        questions: [{ type: "A", name: r.qname }],
        answers: r.answers.map((x) => ({ type: "A" as const, name: x.name, ttl: 5, data: x.a })),
      });
      const got = readAddresses(buf, 7, "perisrv.test", "A");
      if (r.id !== 7 || r.qname.toLowerCase() !== "perisrv.test") return assert.equal(got, null);
      const want = [...new Set(r.answers.filter((x) => x.name.toLowerCase() === "perisrv.test").map((x) => x.a))];
      assert.deepEqual(got?.map((x) => x.address), want);
    }),
    { numRuns: 2000 },
  );
  // Any prefix of a good answer is refused or read whole: a cut never yields a made-up address.
  for (let cut = 0; cut < good.length; cut++) assert.equal(readAddresses(good.subarray(0, cut), 7, "perisrv.test", "A"), null, `cut at ${cut}`);
  fc.assert(
    fc.property(mutate(nbGood), (b) => {
      const got = decodeNbAnswer(b, 7, "perisrv");
      if (got === null) return;
      assert.equal(got.addresses.length, 1);
    }),
    { numRuns: 2000 },
  );
});

test("reverse names: IPv4 in-addr.arpa and IPv6 nibbles under ip6.arpa", () => {
  assert.equal(reverseName("198.18.0.2"), "2.0.18.198.in-addr.arpa");
  assert.equal(reverseName("fd77:1::2"), `2.${"0.".repeat(23)}1.0.0.0.7.7.d.f.ip6.arpa`);
});

test("resolution options: unknown sources and bad name servers are RangeErrors; timeouts out of range are PERILINK_CONFIG", () => {
  assert.throws(() => new NameResolver({ order: ["dns", "carrier-pigeon" as "dns"] }), RangeError);
  assert.throws(() => new NameResolver({ nameServers: ["not an address"] }), RangeError);
  for (const timeoutMs of [0, 3e9]) assert.throws(() => new NameResolver({ timeoutMs }), { code: "PERILINK_CONFIG" });
});

test("unicast DNS: an error answer (NXDOMAIN) for one family ends that query at once instead of waiting for the deadline", async () => {
  const dns = await new FakeNameService().start();
  dns.reply = (q) => {
    const question = q.dns!.questions![0]!;
    if (question.type === "AAAA") return [{ data: packet.encode({ type: "response", id: q.dns!.id!, flags: 3, questions: [question] }) }];
    return [{ data: answerFrom({ "perisrv.test": ["127.0.0.9"] }, q) }];
  };
  const t0 = performance.now();
  const got = await new DnsSource([{ address: dns.address, port: dns.port }]).resolve("perisrv.test", { timeoutMs: 2000 });
  const ms = performance.now() - t0;
  assert.deepEqual(got.map((a) => a.address), ["127.0.0.9"]);
  assert.ok(ms < 500, `answered in ${ms.toFixed(0)} ms, not at the 2000 ms deadline`);
});

test("a cached answer reports the TTL left, and the name is asked again once it expired", async () => {
  const dns = await new FakeNameService().start();
  dns.reply = (q) => [{ data: answerFrom({ "perisrv.test": ["127.0.0.9"] }, q, 10) }];
  let now = 1_000_000;
  const r = new NameResolver({ order: ["dns"], nameServers: [dns.endpoint], timeoutMs: 300 }, undefined, () => now);
  assert.equal((await r.resolve("perisrv.test"))[0]!.ttl, 10);
  const asked = dns.queries.length;
  now += 4_000;
  assert.equal((await r.resolve("PeriSrv.test"))[0]!.ttl, 6, "the TTL left, not the TTL first given");
  assert.equal(dns.queries.length, asked, "from the cache");
  now += 7_000;
  assert.equal((await r.resolve("perisrv.test"))[0]!.ttl, 10);
  assert.ok(dns.queries.length > asked, "asked again after the TTL");
});

test("one answer gives at most MAX_ADDRESSES_PER_NAME (16) addresses: a 64 KiB NetBIOS answer of ~10,900 entries and a DNS answer of 1,000 records alike", () => {
  assert.equal(MAX_ADDRESSES_PER_NAME, 16);
  const q = { msg: Buffer.from(encodeNbQuery(7, "perisrv")) } as unknown as Query;
  const many = Array.from({ length: 10_900 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  const nb = nbAnswer(q, many);
  assert.ok(nb.length <= 65_535 + 12);
  const got = decodeNbAnswer(nb, 7, "perisrv");
  assert.deepEqual(got?.addresses, many.slice(0, 16));
  // The same address over and over is one.
  assert.deepEqual(decodeNbAnswer(nbAnswer(q, Array(5000).fill("10.0.0.9")), 7, "perisrv")?.addresses, ["10.0.0.9"]);
  const dns = packet.encode({
    type: "response",
    id: 7,
    questions: [{ type: "A", name: "perisrv.test" }],
    answers: Array.from({ length: 1000 }, (_, i) => ({ type: "A" as const, name: "perisrv.test", ttl: 5, data: `10.1.${i >> 8}.${i & 255}` })),
  });
  assert.equal(readAddresses(dns, 7, "perisrv.test", "A")?.length, 16);
});

test("a resolution keeps at most 16 addresses for a name over all its answers (A and AAAA), the first ones found", async () => {
  const dns = await new FakeNameService().start();
  const v4 = Array.from({ length: 12 }, (_, i) => `10.2.0.${i + 1}`);
  const v6 = Array.from({ length: 12 }, (_, i) => `fd00:2::${i + 1}`);
  dns.reply = (q) => [{ data: answerFrom({ "perisrv.test": [...v4, ...v6] }, q) }];
  const r = new NameResolver({ order: ["dns"], nameServers: [dns.endpoint], timeoutMs: 500, settleMs: 300 });
  const rows = await r.resolve("perisrv.test");
  const distinct = new Set(rows.map((x) => x.address));
  assert.equal(distinct.size, 16, [...distinct].join(" "));
});

test("LLMNR and NetBIOS are off unless the order names them (anyone on the link may answer them)", () => {
  assert.deepEqual(resolveOptions().order, ["hosts", "dns", "mdns"]);
  assert.deepEqual(resolveOptions({ order: ["hosts", "llmnr", "netbios"] }).order, ["hosts", "llmnr", "netbios"]);
});

test("a flood of multicast or broadcast answers is not kept: the exchange ends at 16 answers and the source gives at most 16 addresses", async () => {
  let n = 0;
  const flood = (answer: (addrs: string[]) => Uint8Array) =>
    Array.from({ length: 40 }, () => {
      const base = n++;
      return { data: answer(Array.from({ length: 16 }, (_, i) => `10.${(base >> 8) & 255}.${base & 255}.${i + 1}`)) };
    });
  const m = await new FakeNameService().start();
  m.reply = (q) => flood((addrs) => dnsAnswer(q, addrs));
  const mdns = await new MulticastSource("mdns", () => route(m), 2000).resolve("perisrv.local", { timeoutMs: 3000 });
  assert.equal(mdns.length, 16);
  const b = await new FakeNameService().start();
  b.reply = (q) => flood((addrs) => nbAnswer(q, addrs));
  const t0 = performance.now();
  const nb = await new NetbiosSource(() => route(b), 2000).resolve("PERISRV", { timeoutMs: 3000 });
  assert.equal(nb.length, 16);
  assert.ok(performance.now() - t0 < 1500, "it ended at the 16th answer, not at the 2 s gather window");
});

test("mDNS: an answer counts only with the query's id and question (RFC 6762 §6.7): id 0, no question or another question are ignored", async () => {
  const svc = await new FakeNameService().start();
  svc.reply = (q) => {
    const question = q.dns!.questions![0]!;
    const forged = (id: number, questions: packet.Question[]) =>
      packet.encode({ type: "response", id, questions, answers: question.type === "A" ? [{ type: "A", name: question.name, ttl: 60, data: "127.6.6.6" }] : [] });
    return [{ data: forged(0, []) }, { data: forged(0, [question]) }, { data: forged(q.dns!.id!, []) }, { data: forged(q.dns!.id!, [{ ...question, name: "other.local" }]) }];
  };
  const src = new MulticastSource("mdns", () => route(svc), 30);
  assert.deepEqual(await src.resolve("perisrv.local", CTX), []);
  svc.reply = (q) => [{ data: dnsAnswer(q, ["127.0.0.9"]) }];
  assert.deepEqual((await src.resolve("perisrv.local", CTX)).map((a) => a.address), ["127.0.0.9"]);
});

test("isOnLink: an address counts on its interface's subnets (IPv4 and IPv6 prefixes), and an IPv6 link-local one on any IPv6 interface", async () => {
  const { isOnLink } = await import("../../src/client/names/interfaces.ts");
  assert.equal(isOnLink("192.168.1.77", ["192.168.1.5/24"]), true);
  assert.equal(isOnLink("192.168.2.77", ["192.168.1.5/24"]), false);
  assert.equal(isOnLink("10.9.9.9", ["192.168.1.5/24", "10.0.0.1/8"]), true);
  assert.equal(isOnLink("2001:db8:1::9", ["2001:db8:1::5/64"]), true);
  assert.equal(isOnLink("2001:db8:2::9", ["2001:db8:1::5/64"]), false);
  assert.equal(isOnLink("fe80::1%eth0", ["2001:db8:1::5/64"]), true);
  assert.equal(isOnLink("fe80::1", ["192.168.1.5/24"]), false, "no IPv6 on the interface");
  assert.equal(isOnLink("192.168.1.77", ["2001:db8:1::5/64"]), false);
  assert.equal(isOnLink("not an address", ["192.168.1.5/24"]), false);
});

test("mDNS, LLMNR and NetBIOS take an answer only from a source on the link the query went out on (RFC 6762 §11): a well-formed answer from off the subnet is ignored", async () => {
  const dgram = await import("node:dgram");
  const svc = await new FakeNameService().start("127.0.0.1");
  // An off-link host (127.0.0.5 is outside 127.0.0.0/30) sends from the service's port number, with the right id and question.
  const offLink = dgram.createSocket("udp4");
  await new Promise<void>((r) => offLink.bind(svc.port, "127.0.0.5", () => r()));
  try {
    let onLinkAnswers = true;
    let netbios = false;
    svc.reply = (q) => {
      offLink.send(netbios ? nbAnswer(q, ["127.6.6.6"]) : dnsAnswer(q, ["127.6.6.6", "::6"]), q.from.port, q.from.address);
      if (!onLinkAnswers) return [];
      return [{ data: netbios ? nbAnswer(q, ["127.0.0.9"]) : dnsAnswer(q, ["127.0.0.9", "::9"]) }];
    };
    const onLink = () => [{ family: 4 as const, target: { address: svc.address, port: svc.port }, onLink: ["127.0.0.0/30"] }];
    for (const make of [() => new MulticastSource("mdns", onLink, 60), () => new MulticastSource("llmnr", onLink, 60), () => new NetbiosSource(onLink, 60)]) {
      const src = make();
      const name = src.name === "mdns" ? "perisrv.local" : "PERISRV";
      netbios = src.name === "netbios";
      onLinkAnswers = true;
      const got = (await src.resolve(name, CTX)).map((a) => a.address);
      assert.ok(got.includes("127.0.0.9") && !got.includes("127.6.6.6"), `${src.name}: ${got.join(", ")}`);
      onLinkAnswers = false;
      assert.deepEqual(await src.resolve(name, CTX), [], `${src.name}: the off-link answer alone is no answer`);
    }
  } finally {
    offLink.close();
  }
});
