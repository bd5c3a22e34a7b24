/**
 * The built-in DNS-SD responder and the browser against each other on
 * loopback (a custom port, never 5353): what an answer holds, what browse
 * keeps of it, and the responder's budgets under a flood.
 */
import * as packet from "@leichtgewicht/dns-packet";
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import dgram from "node:dgram";
import { after, test } from "node:test";
import { browseServers } from "../../src/client/browse.ts";
import { browseInstances } from "../../src/client/names/service_browser.ts";
import type { Route } from "../../src/client/names/interfaces.ts";
import { createLogger } from "../../src/logger.ts";
import { SERVICE_TYPE, decodeTxt, encodeTxt } from "../../src/protocol/dnssd.ts";
import { DnssdResponder } from "../../src/server/dnssd_responder.ts";
import type { LinkAddress, ServiceRecords } from "../../src/server/dnssd_records.ts";
import { sleep, testServer } from "../helpers/fixtures.ts";

const LOOPBACK: LinkAddress[] = [{ address: "127.0.0.1", family: 4, iface: "lo", cidr: "127.0.0.1/8" }];
const log = createLogger("silent");
const responders: DnssdResponder[] = [];
after(async () => {
  for (const r of responders) await r.close(false);
});

function records(port: number, id = randomUUID()): ServiceRecords {
  return { instanceName: `test-pi.${SERVICE_TYPE}`, host: "test-pi.local", port, txt: encodeTxt({ id, fp: "SHA256:abc", ver: "9.9.9", ports: [port] }) };
}

/**
 * A UDP port free now on 127.0.0.1 (an exclusive bind, then closed): the responder binds with
 * SO_REUSEADDR, so a port another test's socket holds would split the datagrams between them.
 */
async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => s.bind({ port: 0, address: "127.0.0.1", exclusive: true }, () => resolve()));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function responder(rec: ServiceRecords, addresses = LOOPBACK): Promise<{ r: DnssdResponder; route: Route }> {
  const port = await freeUdpPort();
  const r = new DnssdResponder({ records: rec, addresses: () => addresses, log, port, limits: { answersPerSecond: 20 } });
  await r.start();
  responders.push(r);
  return { r, route: { family: 4, target: { address: "127.0.0.1", port }, onLink: ["127.0.0.0/8"] } };
}

test("a legacy-unicast PTR query is answered with the instance's SRV, TXT and the link's address, which the browser reads", async () => {
  const { route } = await responder(records(4242, "11111111-2222-4333-8444-555555555555"));
  const found = await browseInstances([route], { timeoutMs: 300 });
  assert.equal(found.length, 1);
  assert.deepEqual(found[0], {
    name: "test-pi",
    host: "test-pi.local",
    port: 4242,
    txt: { id: "11111111-2222-4333-8444-555555555555", fp: "SHA256:abc", ver: "9.9.9", ports: [4242] },
    addresses: ["127.0.0.1"],
    from: "127.0.0.1",
  });
});

test("browse ignores an answer from a source off the link the query went out on", async () => {
  const { r, route } = await responder(records(4243));
  const found = await browseInstances([{ ...route, onLink: ["10.99.0.0/16"] }], { timeoutMs: 300 });
  assert.deepEqual(found, []);
  assert.ok(r.counters.answers >= 1, "the responder did answer; the browser refused it");
});

test("the responder ignores a query from off its links", async () => {
  const { r, route } = await responder(records(4244), [{ address: "10.99.0.1", family: 4, iface: "lo", cidr: "10.99.0.1/16" }]);
  assert.deepEqual(await browseInstances([route], { timeoutMs: 300 }), []);
  assert.ok(r.counters.dropped.offLink >= 1);
  assert.equal(r.counters.answers, 0);
});

test("browse lists a server by its probed id and flags a TXT that names another id", async () => {
  const server = await testServer({ listen: ["127.0.0.1:0"] });
  try {
    const port = server.endpoints()[0]!.port;
    const { route } = await responder(records(port)); // a random id: not the server's
    const rows = await browseServers({ routes: [route], timeoutMs: 300, probeTimeoutMs: 500 });
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.serverId, server.serverId);
    assert.equal(rows[0]!.txt, "differs");
    assert.deepEqual(rows[0]!.addresses, [`127.0.0.1:${port}`]);
    assert.deepEqual(rows[0]!.names, ["test-pi"]);
  } finally {
    await server.close();
  }
});

test("browse leaves out an instance whose address does not answer the signed probe", async () => {
  const { route } = await responder(records(9)); // the discard port: nothing answers a probe there
  assert.deepEqual(await browseServers({ routes: [route], timeoutMs: 300, probeTimeoutMs: 300 }), []);
});

test("a flood of malformed, oversized and many-question datagrams stays inside the answer rate, and a good query is still answered", async () => {
  const { r, route } = await responder(records(4245));
  const flooder = dgram.createSocket("udp4");
  after(() => {
    try {
      flooder.close();
    } catch {
      // closed already
    }
  });
  let answersToFlooder = 0;
  flooder.on("message", () => answersToFlooder++);
  await new Promise<void>((resolve) => flooder.bind(0, "127.0.0.1", resolve));
  const manyQuestions = packet.encode({ type: "query", id: 7, questions: Array.from({ length: 60 }, () => ({ type: "PTR" as const, name: SERVICE_TYPE, class: "IN" as const })) });
  const truncated = manyQuestions.subarray(0, 40);
  const started = Date.now();
  for (let i = 0; i < 300; i++) {
    for (const d of [randomBytes(64), Buffer.alloc(9001), manyQuestions, truncated]) flooder.send(d, route.target.port, "127.0.0.1");
    if (i % 10 === 0) await sleep(2); // paced, so that the kernel's receive buffer keeps most of it
  }
  await sleep(200);
  const seconds = (Date.now() - started) / 1000;
  // Per source: a fifth of 20/s, a burst of 4.
  assert.ok(answersToFlooder <= 4 + Math.ceil(4 * seconds) + 1, `${answersToFlooder} answers in ${seconds} s`);
  const c = r.counters;
  assert.ok(c.datagrams > 400, `only ${c.datagrams} datagrams arrived`);
  assert.equal(c.datagrams, c.dropped.oversize + c.dropped.malformed + c.responses + c.queries, "every datagram is accounted for");
  assert.ok(c.dropped.oversize > 0 && c.dropped.malformed > 0);
  assert.ok(c.dropped.rateLimited >= c.queries - c.answers - 1 && c.answers <= 4 + Math.ceil(4 * seconds) + 1, JSON.stringify(c));
  flooder.close();
  const found = await browseInstances([route], { timeoutMs: 300 });
  assert.equal(found.length, 1, "a fresh source is answered during the flood's aftermath");
});

test("decodeTxt keeps the first of a key given twice and drops malformed values", () => {
  assert.deepEqual(decodeTxt(["id=not-a-uuid", "fp=SHA256:x y", "ver=1.0", "ver=2.0", "ports=1,99999", "junk"]), { ver: "1.0" });
  assert.deepEqual(decodeTxt([Buffer.from("ports=1025,1026")]), { ports: [1025, 1026] });
  assert.deepEqual(decodeTxt(42), {});
});

/** What arrives on the mDNS group at `port` over loopback (a listener joined there, as a browser on the link would be). */
async function groupListener(port: number): Promise<{ packets: packet.Packet[]; close(): void }> {
  const sock = dgram.createSocket({ type: "udp4", reuseAddr: true });
  const packets: packet.Packet[] = [];
  sock.on("message", (m) => packets.push(packet.decode(m)));
  await new Promise<void>((resolve) => sock.bind(port, "0.0.0.0", resolve));
  sock.addMembership("224.0.0.251", "127.0.0.1");
  return { packets, close: () => sock.close() };
}

test("the responder announces twice a second apart, then says goodbye (TTL 0) on close(true) and nothing on close(false), as after a handover", async () => {
  for (const goodbye of [true, false]) {
    const port = await freeUdpPort();
    const heard = await groupListener(port);
    try {
      const r = new DnssdResponder({ records: records(4246), addresses: () => LOOPBACK, log, port });
      await r.start();
      await sleep(1300);
      const responses = () => heard.packets.filter((p) => p.type === "response");
      assert.equal(responses().length, 2, "two announcements (RFC 6762 §8.3)");
      for (const p of responses()) {
        assert.deepEqual(p.answers?.map((a) => a.type), ["PTR", "SRV", "TXT", "A"]);
        assert.ok(p.answers!.every((a) => (a.ttl ?? 0) > 0));
      }
      await r.close(goodbye);
      await sleep(200);
      const after = responses().slice(2);
      if (goodbye) {
        assert.equal(after.length, 1);
        assert.ok(after[0]!.answers!.every((a) => a.ttl === 0), "every record withdrawn");
      } else {
        assert.equal(after.length, 0, "no goodbye: the new process advertises on");
      }
    } finally {
      heard.close();
    }
  }
});

/** A query whose names are chains of compression pointers, each to the one before: cheap to send, costly to decode. */
function pointerChainQuery(questions: number): Buffer {
  const parts: Buffer[] = [Buffer.alloc(12)];
  parts[0]!.writeUInt16BE(questions, 4);
  let at = 12;
  parts.push(Buffer.from([1, 0x61, 0]), Buffer.from([0, 12, 0, 1])); // "a." PTR IN at offset 12
  let prev = at;
  at += 7;
  for (let i = 1; i < questions; i++) {
    parts.push(Buffer.from([1, 0x62, 0xc0 | (prev >> 8), prev & 0xff, 0, 12, 0, 1]));
    prev = at;
    at += 8;
  }
  return Buffer.concat(parts);
}

test("costly datagrams are dropped before they are decoded: off-link ones, too many questions, over the read budget", async () => {
  const offLink = await responder(records(4250), [{ address: "10.99.0.1", family: 4, iface: "lo", cidr: "10.99.0.1/16" }]);
  const onLink = await responder(records(4251));
  const sock = dgram.createSocket("udp4");
  after(() => sock.close());
  const heavy = pointerChainQuery(1000);
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < 200; i++) {
    sock.send(heavy, offLink.route.target.port, "127.0.0.1");
    sock.send(heavy, onLink.route.target.port, "127.0.0.1");
    if (i % 20 === 0) await sleep(5);
  }
  await sleep(300);
  const cpu = process.cpuUsage(cpu0);
  // Loopback may lose some of a burst; every one that arrived was dropped unread.
  assert.ok(offLink.r.counters.datagrams >= 50);
  // (Its own announcements, looped back, count as responses.)
  assert.equal(offLink.r.counters.dropped.offLink + offLink.r.counters.responses, offLink.r.counters.datagrams, "off the link: dropped unread");
  assert.ok(onLink.r.counters.datagrams >= 50);
  assert.equal(onLink.r.counters.dropped.malformed + onLink.r.counters.responses, onLink.r.counters.datagrams, "1000 questions (at most 8): dropped unread");
  assert.equal(onLink.r.counters.queries + offLink.r.counters.queries, 0);
  assert.ok((cpu.user + cpu.system) / 1000 < 400, `400 heavy datagrams cost ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms of CPU`);
  // A good query still gets its answer.
  assert.equal((await browseInstances([onLink.route], { timeoutMs: 300 })).length, 1);
});

test("a responder started before the device had an address answers once one comes", async () => {
  const addresses: LinkAddress[] = [];
  const port = await freeUdpPort();
  const r = new DnssdResponder({ records: records(4252), addresses: () => [...addresses], log, port });
  await r.start();
  responders.push(r);
  const route: Route = { family: 4, target: { address: "127.0.0.1", port }, onLink: ["127.0.0.0/8"] };
  assert.deepEqual(await browseInstances([route], { timeoutMs: 200 }), []);
  addresses.push(...LOOPBACK);
  r.changed();
  await sleep(100);
  assert.equal((await browseInstances([route], { timeoutMs: 300 })).length, 1);
});

test("an answer cannot aim browse's probes: off-link addresses are dropped, and one responder gets at most 8 probes", async () => {
  const victim = dgram.createSocket("udp4");
  await new Promise<void>((r) => victim.bind(0, "0.0.0.0", () => r()));
  after(() => victim.close());
  const victimPort = victim.address().port;
  let probed = 0;
  victim.on("message", () => probed++);
  const hostile = dgram.createSocket("udp4");
  await new Promise<void>((r) => hostile.bind(0, "127.0.0.1", () => r()));
  after(() => hostile.close());
  hostile.on("message", (msg, rinfo) => {
    const q = packet.decode(msg);
    const answers: packet.Answer[] = [];
    for (let i = 0; i < 40; i++) {
      const inst = `n${i}.${SERVICE_TYPE}`;
      answers.push({ type: "PTR", name: SERVICE_TYPE, ttl: 120, data: inst }, { type: "SRV", name: inst, ttl: 120, data: { port: victimPort, target: `h${i}.local` } });
      for (let j = 0; j < 8; j++) answers.push({ type: "A", name: `h${i}.local`, ttl: 120, data: j % 2 === 0 ? `127.0.${i + 1}.${j + 1}` : `10.${i}.0.${j}` });
    }
    hostile.send(packet.encode({ type: "response", id: q.id, flags: packet.AUTHORITATIVE_ANSWER, questions: q.questions, answers }), rinfo.port, rinfo.address);
  });
  const route: Route = { family: 4, target: { address: "127.0.0.1", port: hostile.address().port }, onLink: ["127.0.0.0/8"] };
  const found = await browseInstances([route], { timeoutMs: 300 });
  assert.ok(found.length > 0);
  for (const f of found) for (const a of f.addresses) assert.match(a, /^127\./, "no off-link address kept");
  const rows = await browseServers({ routes: [route], timeoutMs: 300, probeTimeoutMs: 300 });
  assert.deepEqual(rows, []);
  await sleep(100);
  assert.ok(probed <= 16, `${probed} probe datagrams reached the victim (8 probes, 2 attempts each, at most)`);
  assert.ok(probed > 0);
});
