import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import { createClient, type ClientOptions, type PerilinkClient } from "../../src/client/client.ts";
import type { PerilinkServer } from "../../src/server/server.ts";
import { sleep, tempDir, testServer, waitFor } from "../helpers/fixtures.ts";
import { answerFrom, FakeNameService } from "../helpers/fake_name_service.ts";
import { freePort } from "../helpers/free_port.ts";
import { tcpConnectionsTo } from "../helpers/os_sockets.ts";

function client(options: ClientOptions = {}): PerilinkClient {
  const c = createClient({ lingerMs: 0, ...options });
  after(() => c.close());
  return c;
}

/** A server on the same port of several loopback addresses. */
async function serverOn(addresses: string[]): Promise<{ server: PerilinkServer; port: number }> {
  const port = await freePort();
  const server = await testServer({ listen: addresses.map((a) => `${a}:${port}`) });
  return { server, port };
}

async function dnsWith(table: Record<string, string[]>): Promise<FakeNameService> {
  const dns = await new FakeNameService().start();
  dns.reply = (q) => [{ data: answerFrom(table, q) }];
  return dns;
}

test("applications connecting by two DNS names and by each numeric address of one server ride 1 TCP socket, and the address list shows every row", async () => {
  const { server, port } = await serverOn(["127.0.0.1", "127.0.0.2"]);
  const dns = await dnsWith({ "perisrv.test": ["127.0.0.1", "127.0.0.2"], "peri-alias.test": ["127.0.0.2"] });
  const c = client({ resolution: { order: ["dns"], nameServers: [dns.endpoint], reverse: false } });
  const links = [];
  for (const host of ["perisrv.test", "peri-alias.test", "127.0.0.1", "127.0.0.2"]) links.push(await c.connect({ host, port, app: `app-${host}` }));
  const replies = await Promise.all(links.map((l, i) => l.request(`r${i}`)));
  replies.forEach((r, i) => assert.equal(r.toString(), `r${i}`));
  assert.equal(tcpConnectionsTo([port]), 1, "one socket, counted by the OS");
  assert.equal(server.status().sessions, 1);
  const rows = c.addresses().filter((r) => r.source !== "server").map((r) => `${r.name} ${r.address} ${r.source} ${r.serverId}`).sort();
  assert.deepEqual(rows, [
    `127.0.0.1 127.0.0.1 numeric ${server.serverId}`,
    `127.0.0.2 127.0.0.2 numeric ${server.serverId}`,
    `peri-alias.test 127.0.0.2 dns ${server.serverId}`,
    `perisrv.test 127.0.0.1 dns ${server.serverId}`,
    `perisrv.test 127.0.0.2 dns ${server.serverId}`,
  ]);
  for (const r of c.addresses()) if (r.source === "dns") assert.ok(r.ttl !== null && r.ttl > 50 && r.ttl <= 60, `ttl from the answer: ${r.ttl}`);
});

test("session rows keep the name as the application gave it (requestedHost) beside the address used", async () => {
  const { port } = await serverOn(["127.0.0.1"]);
  const dns = await dnsWith({ "perisrv.test": ["127.0.0.1"] });
  const c = client({ resolution: { order: ["dns"], nameServers: [dns.endpoint] } });
  await c.connect({ host: "PeriSrv.Test", port, app: "ui" });
  const [row] = c.sessions();
  assert.equal(row?.requestedHost, "PeriSrv.Test");
  assert.equal(row?.requestedAddress, "127.0.0.1");
  assert.equal(row?.communicationAddress, "127.0.0.1");
});

test("two names that share an address are one server before any socket is opened: concurrent connects send one probe and open one session", async () => {
  const { server, port } = await serverOn(["127.0.0.1", "127.0.0.2"]);
  const dns = await dnsWith({ "appserver.foo.test": ["127.0.0.1", "127.0.0.2"], "appserver.test": ["127.0.0.2", "127.0.0.1"] });
  const c = client({ resolution: { order: ["dns"], nameServers: [dns.endpoint], reverse: false } });
  const before = server.status().counters.probes;
  const links = await Promise.all([
    c.connect({ host: "appserver.foo.test", port, app: "a" }),
    c.connect({ host: "appserver.test", port, app: "b" }),
  ]);
  await Promise.all(links.map((l) => l.request("x")));
  await waitFor(() => links[0]!.entry.addresses.length === 2, "the other address, once proved, to join as a failover address");
  // One probe identified the server for both names; one more proved the second address before it joined.
  assert.equal(server.status().counters.probes! - before!, 2, "one identification for both names, one proof of the other address");
  assert.equal(server.status().counters.sessionsAccepted, 1);
  assert.equal(c.socketsInUse, 1);
});

test("a name pointing at a different server (another identifier) gets its own session", async () => {
  const a = await serverOn(["127.0.0.1"]);
  const b = await testServer({ listen: [`127.0.0.3:${a.port}`] });
  const dns = await dnsWith({ "perisrv.test": ["127.0.0.1"], "other.test": ["127.0.0.3"] });
  const c = client({ resolution: { order: ["dns"], nameServers: [dns.endpoint], reverse: false } });
  const l1 = await c.connect({ host: "perisrv.test", port: a.port, app: "x" });
  const l2 = await c.connect({ host: "other.test", port: a.port, app: "x" });
  await Promise.all([l1.request("1"), l2.request("2")]);
  assert.equal(c.socketsInUse, 2);
  const ids = new Set(c.sessions().map((r) => r.serverId));
  assert.deepEqual(ids, new Set([a.server.serverId, b.serverId]));
});

test("a probe that contradicts a name splits its rows: the address of another server leaves this server's addresses", async () => {
  const a = await serverOn(["127.0.0.1"]);
  const b = await testServer({ listen: [`127.0.0.3:${a.port}`] });
  const dns = await dnsWith({ "mixed.test": ["127.0.0.1", "127.0.0.3"] });
  const c = client({ resolution: { order: ["dns"], nameServers: [dns.endpoint], reverse: false } });
  const link = await c.connect({ host: "mixed.test", port: a.port, app: "x" });
  await link.request("1");
  assert.equal(link.entry.serverId, a.server.serverId);
  const other = await c.connect({ host: "127.0.0.3", port: a.port, app: "y" }); // its probe says: another server
  await other.request("2");
  const byAddress = Object.fromEntries(c.addresses().filter((r) => r.name === "mixed.test").map((r) => [r.address, r.serverId]));
  assert.deepEqual(byAddress, { "127.0.0.1": a.server.serverId, "127.0.0.3": b.serverId });
  assert.deepEqual(link.entry.addresses.map((x) => x.host), ["127.0.0.1"], "the other server's address is not a failover address of this one");
  assert.equal(other.entry.serverId, b.serverId);
  assert.equal(c.socketsInUse, 2);
});

test("reverse lookup of a numeric address teaches the server's other addresses before they are needed", async () => {
  const { server, port } = await serverOn(["127.0.0.1", "127.0.0.2"]);
  const dns = await dnsWith({ "perisrv.test": ["127.0.0.1", "127.0.0.2"] });
  const c = client({ resolution: { order: ["dns"], nameServers: [dns.endpoint] } });
  const link = await c.connect({ host: "127.0.0.1", port, app: "x" });
  await waitFor(() => link.entry.addresses.length === 2, "the PTR name's other address to join the server's addresses");
  const rows = c.addresses().filter((r) => r.source !== "server").map((r) => `${r.name} ${r.address} ${r.source}`).sort();
  assert.deepEqual(rows, ["127.0.0.1 127.0.0.1 numeric", "perisrv.test 127.0.0.1 ptr", "perisrv.test 127.0.0.2 ptr"]);
  assert.equal(link.entry.serverId, server.serverId);
});

test("a name no source knows is PERILINK_NAME_NOT_FOUND and opens no socket", async () => {
  const dns = await dnsWith({});
  const c = client({ resolution: { order: ["dns"], nameServers: [dns.endpoint] } });
  await assert.rejects(c.connect({ host: "nowhere.test", port: 1, app: "x" }), { code: "PERILINK_NAME_NOT_FOUND" });
  assert.equal(c.socketsInUse, 0);
});

test("answers are cached for their TTL: a second connect by the same name asks no name service", async () => {
  const { port } = await serverOn(["127.0.0.1"]);
  const dns = await dnsWith({ "perisrv.test": ["127.0.0.1"] });
  const c = client({ resolution: { order: ["dns"], nameServers: [dns.endpoint], reverse: false } });
  (await c.connect({ host: "perisrv.test", port, app: "a" })).close();
  const asked = dns.queries.length;
  (await c.connect({ host: "perisrv.test", port, app: "b" })).close();
  assert.equal(dns.queries.length, asked);
});

test("a name never overrides a pinned key: an impostor among a name's addresses gets no traffic and no row proves it", async () => {
  const { server: real, port } = await serverOn(["127.0.0.1"]);
  const impostorDir = tempDir();
  const mine = await testServer({ stateDir: impostorDir });
  await mine.drain(200);
  const ident = JSON.parse(await fs.readFile(path.join(impostorDir, "identity.json"), "utf8")) as { serverId: string };
  ident.serverId = real.serverId;
  await fs.writeFile(path.join(impostorDir, "identity.json"), JSON.stringify(ident), { mode: 0o600 });
  const impostor = await testServer({ stateDir: impostorDir, listen: [`127.0.0.2:${port}`] });
  const dns = await dnsWith({ "perisrv.test": ["127.0.0.2", "127.0.0.1"], "evil.test": ["127.0.0.2"] });
  const c = client({ resolution: { order: ["dns"], nameServers: [dns.endpoint], reverse: false } });
  const good = await c.connect({ host: "127.0.0.1", port, app: "victim" });
  const byName = await c.connect({ host: "perisrv.test", port, app: "by-name" });
  assert.equal(byName.entry, good.entry, "the proved address decided the name's server");
  await assert.rejects(c.connect({ host: "evil.test", port, app: "attacker" }), { code: "PERILINK_KEY_MISMATCH" });
  assert.equal((await byName.request("untouched")).toString(), "untouched");
  assert.equal(impostor.status().counters.channelsOpen, 0, "no traffic was steered to the impostor");
  for (const r of c.addresses()) if (r.address === "127.0.0.2") assert.equal(r.serverId, null, "the impostor's address is never shown as the server");
});

test("a poisoned answer cannot merge servers: its unproved addresses join no server's failover addresses until a probe proves them there", async () => {
  const { server: files, port } = await serverOn(["127.0.0.1"]);
  const stranger = await testServer({ listen: [`127.0.0.3:${port}`] });
  const dns = await dnsWith({ "printer.test": ["127.0.0.1", "127.0.0.3", "127.0.0.4"] });
  const c = client({ probeTimeoutMs: 200, resolution: { order: ["dns"], nameServers: [dns.endpoint], reverse: false } });
  const fileLink = await c.connect({ host: "127.0.0.1", port, app: "files" });
  const link = await c.connect({ host: "printer.test", port, app: "print" });
  assert.equal(link.entry, fileLink.entry, "the address it will use was proved to be the file server");
  assert.deepEqual(link.entry.addresses.map((a) => a.host), ["127.0.0.1"], "no address joined on the answer's word");
  await waitFor(() => c.addresses().some((r) => r.address === "127.0.0.3" && r.serverId === stranger.serverId), "the background proof of 127.0.0.3");
  await sleep(400); // the dead 127.0.0.4's proof has timed out (200 ms) by now
  assert.deepEqual(link.entry.addresses.map((a) => a.host), ["127.0.0.1"], "the stranger's address and a dead one never became the file server's");
  assert.equal(files.serverId, link.entry.serverId);
  assert.equal(stranger.status().counters.channelsOpen, 0);
});
