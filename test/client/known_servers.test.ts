import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import { createClient, type ClientOptions, type PerilinkClient } from "../../src/client/client.ts";
import { ServerChangedError } from "../../src/errors.ts";
import type { PerilinkServer } from "../../src/server/server.ts";
import { runCli } from "../helpers/cli.ts";
import { tempDir, testServer, waitFor } from "../helpers/fixtures.ts";
import { answerFrom, FakeNameService } from "../helpers/fake_name_service.ts";
import { freePort } from "../helpers/free_port.ts";

/** The printer on 127.0.0.1 and, on the same port of 127.0.0.2, a LAN host with a fresh identity of its own. */
async function printerAndStranger(): Promise<{ printer: PerilinkServer; stranger: PerilinkServer; port: number }> {
  const port = await freePort();
  const printer = await testServer({ listen: [`127.0.0.1:${port}`] });
  const stranger = await testServer({ listen: [`127.0.0.2:${port}`] });
  assert.notEqual(printer.serverId, stranger.serverId);
  return { printer, stranger, port };
}

/** A DNS server whose answers the test changes as it goes. */
async function dnsOf(table: Record<string, string[]>): Promise<FakeNameService> {
  const dns = await new FakeNameService().start();
  dns.reply = (q) => [{ data: answerFrom(table, q) }];
  return dns;
}

function clientOf(dns: FakeNameService, options: ClientOptions = {}): PerilinkClient {
  const c = createClient({ lingerMs: 0, stateDir: false, resolution: { order: ["dns"], nameServers: [dns.endpoint], reverse: false }, ...options });
  after(() => c.close());
  return c;
}

const changed = (e: unknown): boolean => e instanceof ServerChangedError && e.code === "PERILINK_SERVER_CHANGED";

test("a name that led to the printer and now leads to a stranger with a fresh identity fails with PERILINK_SERVER_CHANGED, also in a restarted client", async () => {
  const { printer, stranger, port } = await printerAndStranger();
  const table: Record<string, string[]> = { "printer.test": ["127.0.0.1"] };
  const dns = await dnsOf(table);
  const pinFile = path.join(tempDir(), "pins.json");
  const day1 = clientOf(dns, { pinFile });
  await (await day1.connect({ host: "printer.test", port, app: "print" })).request("job 1");
  await day1.close();
  table["printer.test"] = ["127.0.0.2"]; // day 2: another host answers for the name
  const day2 = clientOf(dns, { pinFile });
  const err = await day2.connect({ host: "printer.test", port, app: "print" }).catch((e: unknown) => e);
  assert.ok(changed(err), `rejected: ${String(err)}`);
  const e = err as ServerChangedError;
  assert.equal(e.expected.serverId, printer.serverId);
  assert.equal(e.found.serverId, stranger.serverId);
  assert.match(e.message, /printer\.test/);
  assert.ok(e.message.includes(e.expected.keyFingerprint) && e.message.includes(e.found.keyFingerprint), "both fingerprints in the message");
  assert.match(e.message, /perilink forget printer\.test/);
  assert.equal(stranger.status().counters.channelsOpen, 0, "the print job never went to the stranger");
  assert.equal(day2.socketsInUse, 0);
});

test("when an answer lists the stranger first and the printer after it, the record decides: the job goes to the printer", async () => {
  const { printer, stranger, port } = await printerAndStranger();
  const table: Record<string, string[]> = { "printer.test": ["127.0.0.1"] };
  const dns = await dnsOf(table);
  const pinFile = path.join(tempDir(), "pins.json");
  const day1 = clientOf(dns, { pinFile });
  (await day1.connect({ host: "printer.test", port, app: "print" })).close();
  await day1.close();
  table["printer.test"] = ["127.0.0.2", "127.0.0.1"];
  const day2 = clientOf(dns, { pinFile });
  const link = await day2.connect({ host: "printer.test", port, app: "print" });
  assert.equal(link.entry.serverId, printer.serverId);
  assert.equal((await link.request("job")).toString(), "job");
  assert.equal(stranger.status().counters.channelsOpen, 0);
  assert.deepEqual(link.entry.addresses.map((a) => a.host), ["127.0.0.1"], "the stranger's address is no failover address of the printer");
});

test("trustNew accepts the new server and records it; a later plain connect then goes to it", async () => {
  const { stranger, port } = await printerAndStranger();
  const table: Record<string, string[]> = { "printer.test": ["127.0.0.1"] };
  const dns = await dnsOf(table);
  const pinFile = path.join(tempDir(), "pins.json");
  const c1 = clientOf(dns, { pinFile });
  (await c1.connect({ host: "printer.test", port, app: "a" })).close();
  await c1.close();
  table["printer.test"] = ["127.0.0.2"]; // the printer was replaced on purpose
  const c2 = clientOf(dns, { pinFile });
  await assert.rejects(c2.connect({ host: "printer.test", port, app: "a" }), changed);
  const link = await c2.connect({ host: "printer.test", port, app: "a", trustNew: true });
  assert.equal(link.entry.serverId, stranger.serverId);
  link.close();
  await c2.close();
  const c3 = clientOf(dns, { pinFile });
  assert.equal((await c3.connect({ host: "printer.test", port, app: "a" })).entry.serverId, stranger.serverId);
});

test("expectKey pins out of band: another key fails, whatever the record says; the right one connects and is recorded", async () => {
  const { printer, stranger, port } = await printerAndStranger();
  const dns = await dnsOf({ "printer.test": ["127.0.0.2", "127.0.0.1"] });
  const c = clientOf(dns);
  const fp = printer.status().keyFingerprint as string;
  await assert.rejects(c.connect({ host: "127.0.0.2", port, app: "a", expectKey: fp }), (e: unknown) => changed(e) && (e as ServerChangedError).expected.keyFingerprint === fp);
  const link = await c.connect({ host: "printer.test", port, app: "a", expectKey: fp });
  assert.equal(link.entry.serverId, printer.serverId, "the address proving the expected key won, not the first one");
  assert.equal(stranger.status().counters.channelsOpen, 0);
  await assert.rejects(c.connect({ host: "printer.test", port, app: "a", expectKey: "SHA256:nope" }), TypeError);
});

test("an address that led to one server and now leads to another fails with PERILINK_SERVER_CHANGED until forgotten", async () => {
  const port = await freePort();
  const first = await testServer({ listen: [`127.0.0.1:${port}`] });
  const pinFile = path.join(tempDir(), "pins.json");
  const c1 = createClient({ lingerMs: 0, stateDir: false, pinFile });
  (await c1.connect({ host: "127.0.0.1", port, app: "a" })).close();
  await c1.close();
  await first.drain(500);
  const second = await testServer({ listen: [`127.0.0.1:${port}`] }); // another device took the address
  const c2 = createClient({ lingerMs: 0, stateDir: false, pinFile });
  after(() => c2.close());
  const err = await c2.connect({ host: "127.0.0.1", port, app: "a" }).catch((e: unknown) => e);
  assert.ok(changed(err), String(err));
  assert.equal((err as ServerChangedError).expected.serverId, first.serverId);
  assert.deepEqual(await c2.forget("127.0.0.1"), { records: 1, pins: 1 });
  assert.equal((await c2.connect({ host: "127.0.0.1", port, app: "a" })).entry.serverId, second.serverId);
  await c2.close(); // the pin file is written
  const saved = JSON.parse(await fs.readFile(pinFile, "utf8")) as { known: { address?: string; serverId: string }[] };
  assert.deepEqual(saved.known.map((k) => [k.address, k.serverId]), [["127.0.0.1", second.serverId]]);
});

test("clients sharing a pin file see each other's records: a running client checks a name another one recorded", async () => {
  const { printer, port } = await printerAndStranger();
  const table: Record<string, string[]> = { "printer.test": ["127.0.0.1"] };
  const dns = await dnsOf(table);
  const pinFile = path.join(tempDir(), "pins.json");
  const early = clientOf(dns, { pinFile }); // started before the other recorded anything
  const other = clientOf(dns, { pinFile });
  (await other.connect({ host: "Printer.Test.", port, app: "a" })).close();
  await other.close();
  const saved = JSON.parse(await fs.readFile(pinFile, "utf8")) as { known: { name?: string; address?: string; port: number; serverId: string }[] };
  assert.deepEqual(saved.known.map((k) => [k.name ?? k.address, k.port, k.serverId]).sort(), [["127.0.0.1", port, printer.serverId], ["printer.test", port, printer.serverId]].sort());
  table["printer.test"] = ["127.0.0.2"];
  await assert.rejects(early.connect({ host: "printer.test", port, app: "a" }), changed);
  await early.close(); // its pin file is written before the directory goes
});

test("an older pin file without records still reads; a malformed record is PERILINK_PIN_FILE", async () => {
  const dir = tempDir();
  const pinFile = path.join(dir, "pins.json");
  await fs.writeFile(pinFile, JSON.stringify({ version: 1, pins: [] }));
  await createClient({ stateDir: false, pinFile }).close();
  await fs.writeFile(pinFile, JSON.stringify({ version: 1, pins: [], known: [{ name: "printer", port: 0, serverId: "x", publicKey: "y" }] }));
  assert.throws(() => createClient({ stateDir: false, pinFile }), { code: "PERILINK_PIN_FILE" });
});

test("perilink call --expect refuses a server with another key, perilink forget lets a replaced server in", async () => {
  const { printer, stranger, port } = await printerAndStranger();
  const stateDir = tempDir();
  const fp = printer.status().keyFingerprint as string;
  const wrong = await runCli(["call", `127.0.0.2:${port}`, "--expect", fp, "--state-dir", stateDir]);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /PERILINK_SERVER_CHANGED/);
  const ok = await runCli(["call", `127.0.0.1:${port}`, "--expect", fp, "--state-dir", stateDir, "--data", "hi"]);
  assert.equal(ok.code, 0, ok.stderr);
  await printer.drain(500);
  await stranger.drain(500);
  const replacement = await testServer({ listen: [`127.0.0.1:${port}`] });
  const refused = await runCli(["call", `127.0.0.1:${port}`, "--state-dir", stateDir]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /perilink forget 127\.0\.0\.1.*PERILINK_SERVER_CHANGED/s);
  const forgot = await runCli(["forget", "127.0.0.1", "--state-dir", stateDir]);
  assert.equal(forgot.code, 0, forgot.stderr);
  assert.match(forgot.stdout, new RegExp(`forgot address 127\\.0\\.0\\.1 port ${port} → server ${printer.serverId}`));
  const again = await runCli(["call", `127.0.0.1:${port}`, "--state-dir", stateDir, "--json"]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal((JSON.parse(again.stdout) as { sessions: { serverId: string }[] }).sessions[0]?.serverId, replacement.serverId);
  const nothing = await runCli(["forget", "nowhere.test", "--state-dir", stateDir]);
  assert.equal(nothing.code, 0);
  assert.match(nothing.stdout, /nothing was known of nowhere\.test/);
});

test("a name that now leads to a server behind filtered UDP is refused in the TCP handshake, before the client proves its key", async () => {
  const { printer, port } = await printerAndStranger();
  // The stranger is reached through a TCP relay on 127.0.0.3, where no UDP probe is answered: the client falls back to a handshake.
  const net = await import("node:net");
  let clientBytes = 0;
  const relay = net.createServer((inbound) => {
    const out = net.connect(port, "127.0.0.2");
    inbound.on("data", (d: Buffer) => (clientBytes += d.length));
    inbound.pipe(out).pipe(inbound);
    inbound.on("error", () => out.destroy());
    out.on("error", () => inbound.destroy());
  });
  await new Promise<void>((r) => relay.listen(port, "127.0.0.3", () => r()));
  after(() => relay.close());
  const table: Record<string, string[]> = { "printer.test": ["127.0.0.1"] };
  const dns = await dnsOf(table);
  const pinFile = path.join(tempDir(), "pins.json");
  const day1 = clientOf(dns, { probeTimeoutMs: 200, pinFile });
  (await day1.connect({ host: "printer.test", port, app: "a" })).close();
  await day1.close();
  table["printer.test"] = ["127.0.0.3"];
  const day2 = clientOf(dns, { probeTimeoutMs: 200, pinFile });
  const err = await day2.connect({ host: "printer.test", port, app: "a" }).catch((e: unknown) => e);
  assert.ok(changed(err), String(err));
  assert.equal((err as ServerChangedError).expected.serverId, printer.serverId);
  assert.equal(clientBytes, 48, "only the client hello reached the stranger: no proof of the client's key");
  assert.equal(day2.socketsInUse, 0);
});

test("forget NAME lets in a replacement that kept the old device's address: the name's server's address records go too", async () => {
  const port = await freePort();
  const old = await testServer({ listen: [`127.0.0.1:${port}`] });
  const dns = await dnsOf({ "printer.test": ["127.0.0.1"] });
  const pinFile = path.join(tempDir(), "pins.json");
  const c1 = clientOf(dns, { pinFile });
  (await c1.connect({ host: "printer.test", port, app: "a" })).close();
  await c1.close();
  await old.drain(500);
  const replacement = await testServer({ listen: [`127.0.0.1:${port}`] });
  const c2 = clientOf(dns, { pinFile });
  await assert.rejects(c2.connect({ host: "printer.test", port, app: "a" }), changed);
  assert.deepEqual(await c2.forget("printer.test"), { records: 2, pins: 1 }, "the name's record and its address's");
  assert.equal((await c2.connect({ host: "printer.test", port, app: "a" })).entry.serverId, replacement.serverId);
});

test("a forget in one process sticks: another running client neither writes the record back nor keeps refusing the replacement", async () => {
  const { printer, stranger, port } = await printerAndStranger();
  const table: Record<string, string[]> = { "printer.test": ["127.0.0.1"], "other.test": ["127.0.0.2"] };
  const dns = await dnsOf(table);
  const pinFile = path.join(tempDir(), "pins.json");
  const daemon = clientOf(dns, { pinFile }); // a long-running client that recorded the printer
  (await daemon.connect({ host: "printer.test", port, app: "a" })).close();
  await daemon.connect({ host: "127.0.0.2", port, app: "b" }).then((l) => l.close());
  await waitFor(async () => ((JSON.parse(await fs.readFile(pinFile, "utf8").catch(() => "{}")) as { known?: unknown[] }).known?.length ?? 0) === 3, "the daemon's records in the file");
  const admin = clientOf(dns, { pinFile }); // `perilink forget` in another process
  assert.equal((await admin.forget("printer.test")).records, 2);
  await admin.close();
  // The daemon records something else (a write): the forgotten records stay out of the file.
  await daemon.connect({ host: "other.test", port, app: "c" }).then((l) => l.close());
  await daemon.close();
  const saved = JSON.parse(await fs.readFile(pinFile, "utf8")) as { known: { serverId: string }[] };
  assert.ok(!saved.known.some((k) => k.serverId === printer.serverId), "the printer's records were not written back");
  // And a running client that still held the record takes the replaced server once the file no longer has it.
  const daemon2 = clientOf(dns, { pinFile, identityTtlMs: 0 });
  (await daemon2.connect({ host: "127.0.0.2", port, app: "d" })).close();
  await waitFor(async () => (await fs.readFile(pinFile, "utf8")).includes(stranger.serverId), "daemon2's record in the file");
  const admin2 = clientOf(dns, { pinFile });
  await admin2.forget("127.0.0.2");
  await admin2.close();
  await stranger.drain(500);
  const replacement = await testServer({ listen: [`127.0.0.2:${port}`] }); // another device took 127.0.0.2
  assert.equal((await daemon2.connect({ host: "127.0.0.2", port, app: "e" })).entry.serverId, replacement.serverId, "the running client read the forget");
});

test("a forget whose write fails reports it (PERILINK_PIN_FILE) and is written with the next change", async () => {
  const { port } = await printerAndStranger();
  const pinFile = path.join(tempDir(), "pins.json");
  const c = createClient({ lingerMs: 0, stateDir: false, pinFile });
  after(() => c.close());
  (await c.connect({ host: "127.0.0.1", port, app: "a" })).close();
  await c.forget("nothing-yet.test"); // nothing known: no write
  const { writeFileSync, unlinkSync } = await import("node:fs");
  writeFileSync(`${pinFile}.lock`, "another writer"); // fresh: waited for, not taken over
  await assert.rejects(c.forget("127.0.0.1"), { code: "PERILINK_PIN_FILE" });
  unlinkSync(`${pinFile}.lock`);
  (await c.connect({ host: "127.0.0.2", port, app: "b" })).close();
  await c.close();
  const saved = JSON.parse(await fs.readFile(pinFile, "utf8")) as { known: { address?: string }[] };
  assert.deepEqual(saved.known.map((k) => k.address), ["127.0.0.2"], "the forgotten record went with the next write");
});

test("spellings: a name that is an address (127.0.0.1.) and an IPv4-mapped address are the address; a file written either way reads", async () => {
  const { placeOf } = await import("../../src/client/known_servers.ts");
  assert.deepEqual(placeOf("127.0.0.1."), { kind: "address", host: "127.0.0.1" });
  assert.deepEqual(placeOf("::ffff:127.0.0.1"), { kind: "address", host: "127.0.0.1" });
  assert.deepEqual(placeOf("[::FFFF:7F00:1]"), { kind: "address", host: "127.0.0.1" });
  assert.deepEqual(placeOf("Printer.Test."), { kind: "name", host: "printer.test" });
  assert.deepEqual(placeOf("[fe80::1%eth0]"), { kind: "address", host: "fe80::1%eth0" });
  const pinFile = path.join(tempDir(), "pins.json");
  const id = "00000000-0000-4000-8000-000000000001";
  await fs.writeFile(pinFile, JSON.stringify({ version: 1, pins: [], known: [{ name: "127.0.0.1", port: 9, serverId: id, publicKey: "ab".repeat(32) }] }));
  const c = createClient({ stateDir: false, pinFile });
  await c.close();
});

test("a device replaced at an address the table still has an entry for: the first connect fails PERILINK_SERVER_CHANGED, not UNREACHABLE", async () => {
  // Regression: the entry tried its one address, found another server, and said none of its addresses answered.
  const port = await freePort();
  const printer = await testServer({ listen: [`127.0.0.1:${port}`] });
  const c = createClient({ stateDir: false, lingerMs: 0 });
  after(() => c.close());
  (await c.connect({ host: "127.0.0.1", port, app: "print" })).close();
  await printer.drain(1000);
  const replacement = await testServer({ listen: [`127.0.0.1:${port}`] });
  const err = await c.connect({ host: "127.0.0.1", port, app: "print" }).catch((e: unknown) => e);
  assert.ok(changed(err), `rejected: ${String(err)}`);
  assert.match((err as Error).message, /perilink forget 127\.0\.0\.1/);
  await c.forget("127.0.0.1");
  assert.equal((await c.connect({ host: "127.0.0.1", port, app: "print" })).entry.serverId, replacement.serverId);
});
