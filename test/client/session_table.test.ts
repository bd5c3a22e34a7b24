import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import { createClient, type PerilinkClient } from "../../src/client/client.ts";
import { KeyMismatchError, OutcomeUnknownError, SocketLimitError } from "../../src/errors.ts";
import type { SessionApp } from "../../src/server/app.ts";
import type { InterfaceAddress } from "../../src/server/interface_addresses.ts";
import { sleep, tempDir, testServer, waitFor } from "../helpers/fixtures.ts";
import { tcpConnectionsTo } from "../helpers/os_sockets.ts";

function client(options: Parameters<typeof createClient>[0] = {}): PerilinkClient {
  const c = createClient({ lingerMs: 0, ...options });
  after(() => c.close());
  return c;
}

test("3 applications × 3 addresses (127.0.0.1, 127.0.0.2, ::1) of one server ride exactly 1 TCP socket", async () => {
  const server = await testServer({ listen: ["127.0.0.1:0", "127.0.0.2:0", "[::1]:0"] });
  const eps = server.endpoints();
  const c = client();
  const links = [];
  for (const app of ["printer-ui", "spooler", "monitor"]) {
    for (const ep of eps) links.push(await c.connect({ host: ep.address, port: ep.port, app }));
  }
  const replies = await Promise.all(links.map((l, i) => l.request(`r${i}`)));
  replies.forEach((r, i) => assert.equal(r.toString(), `r${i}`));
  assert.equal(tcpConnectionsTo(eps.map((e) => e.port)), 1, "one socket, counted by the OS");
  assert.equal(server.status().sessions, 1);
  const rows = c.sessions();
  assert.equal(rows.length, 9);
  for (const r of rows) {
    for (const k of ["managementNumber", "app", "requestedAddress", "requestedPort", "communicationAddress", "communicationPort", "serverId", "sessionNumber", "refCount"]) {
      assert.ok(k in r, `row has ${k}`);
    }
    assert.equal(r.serverId, server.serverId);
    assert.equal(r.sessionNumber, rows[0]!.sessionNumber);
    assert.equal(r.refCount, 9);
  }
  assert.deepEqual(new Set(rows.map((r) => `${r.requestedAddress}:${r.requestedPort}`)).size, 3, "the requested addresses are kept per row");
  assert.deepEqual(new Set(rows.map((r) => r.managementNumber)).size, 9);
});

test("two servers get two sockets", async () => {
  const a = await testServer({ listen: ["127.0.0.1:0", "127.0.0.2:0"] });
  const b = await testServer({ listen: ["127.0.0.1:0"] });
  const c = client();
  for (const ep of [...a.endpoints(), ...b.endpoints()]) {
    for (const app of ["x", "y"]) await (await c.connect({ host: ep.address, port: ep.port, app })).request("hi");
  }
  assert.equal(tcpConnectionsTo([...a.endpoints(), ...b.endpoints()].map((e) => e.port)), 2);
  assert.equal(new Set(c.sessions().map((r) => r.sessionNumber)).size, 2);
});

test("closing links in any order keeps the session until the last one closes", async () => {
  const server = await testServer({ listen: ["127.0.0.1:0", "127.0.0.2:0"] });
  const [e1, e2] = server.endpoints();
  const c = client();
  const links = [
    await c.connect({ host: e1!.address, port: e1!.port, app: "a" }),
    await c.connect({ host: e2!.address, port: e2!.port, app: "b" }),
    await c.connect({ host: e1!.address, port: e1!.port, app: "c" }),
  ];
  const ports = [e1!.port, e2!.port];
  for (const i of [1, 0]) {
    links[i]!.close();
    assert.equal((await links[2]!.request("still here")).toString(), "still here", "one application's close never cuts another's link");
    assert.equal(tcpConnectionsTo(ports), 1);
  }
  links[2]!.close();
  await waitFor(() => tcpConnectionsTo(ports) === 0, "the session to close after its last link");
  await waitFor(() => server.status().sessions === 0, "the server to see it close");
});

test("a session lingers after its last link for lingerMs, and a new link in that time reuses it", async () => {
  const server = await testServer();
  const ep = server.endpoints()[0]!;
  const c = client({ lingerMs: 300 });
  const l1 = await c.connect({ host: ep.address, port: ep.port, app: "a" });
  l1.close();
  const l2 = await c.connect({ host: ep.address, port: ep.port, app: "b" });
  assert.equal(server.status().counters.sessionsAccepted, 1, "no second session");
  l2.close();
  await sleep(100);
  assert.equal(tcpConnectionsTo([ep.port]), 1);
  await waitFor(() => tcpConnectionsTo([ep.port]) === 0, "the linger to end", 3000);
});

test("fails over to another address of the same server when the communication address goes away", async () => {
  let addrs: InterfaceAddress[] = [
    { address: "127.0.0.1", family: 4, iface: "lo", linkLocal: false },
    { address: "127.0.0.2", family: 4, iface: "lo", linkLocal: false },
  ];
  const app: SessionApp = { request: async (p) => (await sleep(Buffer.from(p).toString() === "slow" ? 300 : 1), p) };
  const server = await testServer({ listen: ["auto:0"], interfaces: () => addrs, appObject: app });
  const port = server.endpoints()[0]!.port;
  const c = client();
  const viaOne = await c.connect({ host: "127.0.0.1", port, app: "one" });
  const viaTwo = await c.connect({ host: "127.0.0.2", port, app: "two" });
  assert.equal(c.sessions()[0]!.communicationAddress, "127.0.0.1");
  const errors: unknown[] = [];
  let answered = 0;
  let stop = false;
  const traffic = (async () => {
    for (let i = 0; !stop && i < 100_000; i++) {
      try {
        const l = i % 2 ? viaOne : viaTwo;
        assert.equal((await l.request(`m${i}`, { idempotent: true })).toString(), `m${i}`);
        answered++;
      } catch (err) {
        errors.push(err);
      }
    }
  })();
  const slowIdem = viaOne.request("slow", { idempotent: true });
  const slowOnce = viaTwo.request("slow").then(() => null, (e: unknown) => e);
  await sleep(100);
  addrs = addrs.filter((a) => a.address !== "127.0.0.1"); // the address vanishes from the device
  await server.rescan();
  assert.equal((await slowIdem).toString(), "slow", "an idempotent request in flight is sent again on the new address");
  const once = await slowOnce;
  assert.ok(once instanceof OutcomeUnknownError, `a non-idempotent request in flight fails with PERILINK_OUTCOME_UNKNOWN, got ${String(once)}`);
  await sleep(200);
  stop = true;
  await traffic;
  assert.deepEqual(errors, [], "idempotent traffic saw no error");
  assert.ok(answered > 10);
  await waitFor(() => c.sessions()[0]?.communicationAddress === "127.0.0.2", "the session to move to 127.0.0.2");
  assert.equal(tcpConnectionsTo([port]), 1);
});

test("never holds more than maxSessions sockets; waiters get slots as they free; beyond maxWaiting a clear error", async () => {
  const servers = await Promise.all(Array.from({ length: 5 }, () => testServer()));
  const ports = servers.map((s) => s.endpoints()[0]!.port);
  const c = client({ maxSessions: 2, maxWaiting: 2, waitTimeoutMs: 5000 });
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, tcpConnectionsTo(ports) ?? 0)), 2);
  try {
    const l0 = await c.connect({ host: "127.0.0.1", port: ports[0]!, app: "a" });
    const l1 = await c.connect({ host: "127.0.0.1", port: ports[1]!, app: "a" });
    const w2 = c.connect({ host: "127.0.0.1", port: ports[2]!, app: "a" });
    const w3 = c.connect({ host: "127.0.0.1", port: ports[3]!, app: "a" });
    await sleep(50);
    await assert.rejects(c.connect({ host: "127.0.0.1", port: ports[4]!, app: "a" }), (e: unknown) => e instanceof SocketLimitError && e.code === "PERILINK_SOCKET_LIMIT" && /maxWaiting/.test(e.message));
    l0.close();
    const l2 = await w2;
    assert.equal((await l2.request("served")).toString(), "served");
    l1.close();
    const l3 = await w3;
    assert.equal((await l3.request("served")).toString(), "served");
    l2.close();
    l3.close();
  } finally {
    clearInterval(sampler);
  }
  assert.ok(peak <= 2, `at most 2 sockets at any sample, saw ${peak}`);
  assert.ok(c.socketsInUse <= 2);
});

test("a waiter times out with PERILINK_SOCKET_LIMIT when no slot frees", async () => {
  const [a, b] = await Promise.all([testServer(), testServer()]);
  const c = client({ maxSessions: 1, maxWaiting: 4, waitTimeoutMs: 200 });
  await c.connect({ host: "127.0.0.1", port: a.endpoints()[0]!.port, app: "a" });
  await assert.rejects(c.connect({ host: "127.0.0.1", port: b.endpoints()[0]!.port, app: "a" }), /no socket freed within 200 ms/);
});

test("rejects a server that answers probes with a known identifier but its own key", async () => {
  const real = await testServer();
  const realId = JSON.parse(await fs.readFile(path.join(real.config.stateDir, "identity.json"), "utf8")) as { serverId: string };
  // An impostor: another key, the real server's identifier.
  const impostorDir = tempDir();
  const mine = await testServer({ stateDir: impostorDir });
  await mine.drain(200);
  const ident = JSON.parse(await fs.readFile(path.join(impostorDir, "identity.json"), "utf8")) as { serverId: string };
  ident.serverId = realId.serverId;
  await fs.writeFile(path.join(impostorDir, "identity.json"), JSON.stringify(ident), { mode: 0o600 });
  const impostor = await testServer({ stateDir: impostorDir, listen: ["127.0.0.2:0"] });
  assert.equal(impostor.serverId, real.serverId);
  const c = client();
  const good = await c.connect({ host: "127.0.0.1", port: real.endpoints()[0]!.port, app: "victim" });
  await assert.rejects(
    c.connect({ host: "127.0.0.2", port: impostor.endpoints()[0]!.port, app: "attacker" }),
    (e: unknown) => e instanceof KeyMismatchError && e.code === "PERILINK_KEY_MISMATCH",
  );
  assert.equal((await good.request("untouched")).toString(), "untouched");
  assert.equal(impostor.status().counters.channelsOpen, 0, "no traffic was steered to the impostor");
});

test("falls back to the TCP handshake when UDP probes get no answer", async () => {
  const server = await testServer({ probe: { ratePerSecond: 1, burst: 1 } });
  const ep = server.endpoints()[0]!;
  const c1 = client({ probeTimeoutMs: 200 });
  await c1.connect({ host: ep.address, port: ep.port, app: "uses-the-one-probe" });
  const c2 = client({ probeTimeoutMs: 200 }); // its probe is rate-limited away: no UDP answer
  const l = await c2.connect({ host: ep.address, port: ep.port, app: "tcp-fallback" });
  assert.equal((await l.request("ok")).toString(), "ok");
  assert.equal(tcpConnectionsTo([ep.port]), 2, "one session per client; the fallback's handshake became the session");
});

test("a burst of concurrent connects to an unknown address sends one probe and opens one session", async () => {
  const server = await testServer();
  const ep = server.endpoints()[0]!;
  const c = client();
  const links = await Promise.all(Array.from({ length: 150 }, (_, i) => c.connect({ host: ep.address, port: ep.port, app: `app${i}` })));
  await Promise.all(links.map((l) => l.request("x")));
  assert.equal(server.status().counters.probes, 1);
  assert.equal(server.status().counters.sessionsAccepted, 1);
  assert.equal(tcpConnectionsTo([ep.port]), 1);
});

test("connect does not wait for the server's channel OK; a refused channel fails the link's requests", async () => {
  const server = await testServer({ limits: { maxChannelsPerSession: 2 } });
  const ep = server.endpoints()[0]!;
  const c = client();
  const [a, b, extra] = await Promise.all(["a", "b", "c"].map((app) => c.connect({ host: ep.address, port: ep.port, app })));
  assert.equal((await a!.request("a")).toString(), "a");
  assert.equal((await b!.request("b")).toString(), "b");
  await assert.rejects(extra!.request("c"), (e: unknown) => (e as { code?: string }).code === "PERILINK_SERVER_BUSY");
});

test("sessions() lists a session no link rides as a row of its own: lingering, then gone after lingerMs", async () => {
  const server = await testServer();
  const c = client({ lingerMs: 400 });
  const link = await c.connect({ host: "127.0.0.1", port: server.endpoints()[0]!.port, app: "a" });
  await link.request("x");
  assert.deepEqual(c.sessions().map((r) => r.state), ["active"]);
  link.close();
  const rows = c.sessions();
  assert.equal(rows.length, 1);
  assert.deepEqual([rows[0]!.managementNumber, rows[0]!.app, rows[0]!.state, rows[0]!.refCount, rows[0]!.communicationAddress], [0, "", "lingering", 0, "127.0.0.1"]);
  await waitFor(() => c.sessions().length === 0, "the session to close after lingerMs", 3000);
});
