import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { after, test } from "node:test";
import { fetch as undiciFetch, request } from "undici";
import { createDispatcher, type DispatcherOptions } from "../../src/http.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { loopback } from "../helpers/two_addresses.ts";
import { sleep, testServer, waitFor } from "../helpers/fixtures.ts";
import { startDnsmasqOnLoopback } from "../helpers/name_peers.ts";
import type { PerilinkServer } from "../../src/server/server.ts";

/** A raw-mode perilink server with a node:http app on 127.0.0.1 and ::1 (one port); answers with the Host it was sent and the socket it came on. */
async function rawServer(handler?: http.RequestListener): Promise<{ server: PerilinkServer; port: number; connections: () => number; drop(address: string): Promise<void> }> {
  let addrs = [loopback("127.0.0.1", 4), loopback("::1", 6)];
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const app = {
    createServer: () => {
      const s = http.createServer(
        handler ??
          ((req, res) => {
            req.resume();
            req.on("end", () => res.end(JSON.stringify({ host: req.headers.host, method: req.method, local: req.socket.localAddress, remotePort: req.socket.remotePort })));
          }),
      );
      s.on("connection", (c: net.Socket) => {
        connections++;
        sockets.add(c);
        c.on("close", () => sockets.delete(c));
      });
      return s;
    },
  };
  const server = await testServer({ listen: ["auto:0"], interfaces: () => addrs, appObject: app });
  return {
    server,
    port: server.endpoints()[0]!.port,
    connections: () => connections,
    /** The address leaves the device: its listener closes and its connections break. */
    drop: async (address) => {
      addrs = addrs.filter((a) => a.address !== address);
      await server.rescan();
      for (const c of sockets) if (c.localAddress === address) c.destroy();
    },
  };
}

/** undici on Deno opens a new connection for nearly every request (its sockets are not taken back into the pool), so counts of connections hold on Node only. */
const COUNTS = detectRuntime().name === "deno" ? "undici on Deno does not reuse its connections: connection counts hold on Node only (docs/runtimes.md)" : false;

function dispatcher(options: DispatcherOptions = {}): ReturnType<typeof createDispatcher> {
  const d = createDispatcher({ stateDir: false, ...options });
  after(() => d.close());
  return d;
}

async function get(url: string, d: ReturnType<typeof createDispatcher>, init: Parameters<typeof request>[1] = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(url, { ...init, dispatcher: d });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

test("one connection to a perilink server whatever address the URL names, each request with its own Host", { skip: COUNTS }, async () => {
  const { port, connections } = await rawServer();
  const d = dispatcher();
  const a = await get(`http://127.0.0.1:${port}/a`, d);
  const b = await get(`http://[::1]:${port}/b`, d);
  const c = await get(`http://localhost:${port}/c`, d);
  assert.equal(a.body.host, `127.0.0.1:${port}`);
  assert.equal(b.body.host, `[::1]:${port}`);
  assert.equal(c.body.host, `localhost:${port}`);
  assert.equal(connections(), 1, "one TCP connection for three origins of one server");
  assert.equal(d.socketsInUse, 1);
  const rows = d.servers();
  assert.equal(rows.length, 1);
  assert.match(rows[0]!.key, /^id:/);
  assert.deepEqual([...rows[0]!.addresses].sort(), ["127.0.0.1", "::1"]);
});

test("fetch() through the dispatcher: undici's fetch, and the global fetch through setGlobalDispatcher", { skip: COUNTS }, async () => {
  const { port, connections } = await rawServer();
  const d = dispatcher();
  const r1 = await undiciFetch(`http://127.0.0.1:${port}/x`, { dispatcher: d });
  assert.equal(r1.status, 200);
  assert.equal(((await r1.json()) as { host: string }).host, `127.0.0.1:${port}`);
  const { getGlobalDispatcher, setGlobalDispatcher } = await import("undici");
  const before = getGlobalDispatcher();
  setGlobalDispatcher(d);
  try {
    const r2 = await fetch(`http://[::1]:${port}/y`, { method: "POST", body: "hello" });
    assert.equal(((await r2.json()) as { host: string; method: string }).method, "POST");
  } finally {
    setGlobalDispatcher(before);
  }
  assert.equal(connections(), 1, "the global fetch rode the same connection");
});

test("a plain HTTP device that answers no probe: names that share an address are one device", { skip: COUNTS }, async () => {
  let connections = 0;
  const plain = http.createServer((req, res) => res.end(JSON.stringify({ host: req.headers.host })));
  plain.on("connection", () => connections++);
  await new Promise<void>((r) => plain.listen(0, "127.0.0.1", r));
  after(() => plain.close());
  const port = (plain.address() as net.AddressInfo).port;
  const d = dispatcher({ probeTimeoutMs: 100 });
  assert.equal((await get(`http://127.0.0.1:${port}/`, d)).body.host, `127.0.0.1:${port}`);
  assert.equal((await get(`http://localhost:${port}/`, d)).body.host, `localhost:${port}`);
  assert.equal(connections, 1);
  assert.match(d.servers()[0]!.key, /^http:/);
});

test("failover: when the address in use leaves the device, requests go to the server's other proven address, a GET in flight is sent again", { skip: COUNTS }, async () => {
  let slow = 0;
  const srv = await rawServer((req, res) => {
    req.resume();
    const wait = req.url === "/slow" ? 300 : 0;
    if (wait) slow++;
    setTimeout(() => res.end(JSON.stringify({ local: req.socket.localAddress })), wait);
  });
  const d = dispatcher();
  const first = await get(`http://127.0.0.1:${srv.port}/`, d);
  assert.equal(first.body.local, "127.0.0.1");
  await get(`http://[::1]:${srv.port}/`, d); // the server's other address, proven by its probe: one server, one connection still
  assert.deepEqual(d.servers().map((r) => [r.addresses.length, r.opened]), [[2, 1]]);
  // The connection is cut under a request: the server stops listening there and its connections are reset.
  const inflight = get(`http://127.0.0.1:${srv.port}/slow`, d);
  await waitFor(() => slow === 1, "the slow request to reach the server");
  for (const row of d.servers()) assert.equal(row.sockets, 1);
  await srv.drop("127.0.0.1");
  const again = await inflight;
  assert.equal(again.status, 200);
  assert.equal(again.body.local, "::1", "the GET was sent again on the other address");
  const next = await get(`http://127.0.0.1:${srv.port}/`, d);
  assert.equal(next.body.local, "::1");
});

test("2 names × 2 addresses of one perilink server, resolved by a real DNS server (dnsmasq): 1 socket; a new name of a known server opens none", { skip: COUNTS }, async (t) => {
  const srv = await rawServer();
  const dnsPort = 20_000 + Math.floor(Math.random() * 20_000);
  const dns = startDnsmasqOnLoopback(dnsPort, ["printer.test,127.0.0.1,::1", "printer-alias.test,127.0.0.1,::1", "late.test,::1"]);
  if ("skip" in dns) return t.skip(dns.skip);
  after(() => dns.child.kill());
  await sleep(300);
  const d = dispatcher({ resolution: { nameServers: [`127.0.0.1:${dnsPort}`], order: ["dns"] } });
  for (const url of [`http://printer.test:${srv.port}/`, `http://printer-alias.test:${srv.port}/`, `http://127.0.0.1:${srv.port}/`, `http://[::1]:${srv.port}/`]) {
    const r = await get(url, d);
    assert.equal(r.body.host, new URL(url).host);
  }
  assert.equal(srv.connections(), 1);
  const opened = d.servers()[0]!.opened;
  assert.equal((await get(`http://late.test:${srv.port}/`, d)).body.host, `late.test:${srv.port}`);
  assert.equal(d.servers()[0]!.opened, opened, "no new connection for a new name of a known server");
  assert.equal(d.servers().length, 1);
});

test("a POST cut by a broken line fails PERILINK_OUTCOME_UNKNOWN; one that never left fails PERILINK_UNREACHABLE", async () => {
  let arrived = 0;
  const srv = await rawServer((req, res) => {
    req.resume();
    arrived++;
    if (req.url !== "/hang") res.end("{}");
  });
  const d = dispatcher();
  await get(`http://127.0.0.1:${srv.port}/`, d);
  const cut = request(`http://127.0.0.1:${srv.port}/hang`, { method: "POST", body: "print this", dispatcher: d });
  await waitFor(() => arrived === 2, "the POST to reach the server");
  await srv.drop("127.0.0.1");
  await assert.rejects(cut, { code: "PERILINK_OUTCOME_UNKNOWN", message: /may have run.*POST is not idempotent/ });
  assert.equal(arrived, 2, "not sent again");
  await assert.rejects(request(`http://127.0.0.1:${srv.port}/`, { method: "POST", body: "x", dispatcher: d }), { code: "PERILINK_UNREACHABLE" });
  assert.equal(arrived, 2);
});

test("the socket limit holds across servers: a third server waits for a slot, then fails PERILINK_SOCKET_LIMIT", { skip: COUNTS }, async () => {
  const servers = await Promise.all([rawServer(), rawServer(), rawServer()]);
  const d = dispatcher({ maxSockets: 2, maxWaiting: 1, waitTimeoutMs: 300, pool: { keepAliveTimeout: 60_000 } });
  await get(`http://127.0.0.1:${servers[0]!.port}/`, d);
  await get(`http://127.0.0.1:${servers[1]!.port}/`, d);
  assert.equal(d.socketsInUse, 2);
  const started = Date.now();
  await assert.rejects(get(`http://127.0.0.1:${servers[2]!.port}/`, d), { code: "PERILINK_SOCKET_LIMIT" });
  assert.ok(Date.now() - started >= 250, "it waited for a slot first");
  assert.equal(d.socketsInUse, 2);
});

test("a name or address that led to one perilink server and now leads to another fails PERILINK_SERVER_CHANGED", async () => {
  const first = await testServer({ listen: ["127.0.0.1:0"], appObject: { createServer: () => http.createServer((_q, s) => s.end("{}")) } });
  const port = first.endpoints()[0]!.port;
  const d = dispatcher({ identityTtlMs: 0 });
  await get(`http://127.0.0.1:${port}/`, d);
  await first.drain(1000);
  const impostor = await testServer({ listen: [`127.0.0.1:${port}`], appObject: { createServer: () => http.createServer((_q, s) => s.end("{}")) } });
  assert.notEqual(impostor.serverId, first.serverId);
  await assert.rejects(get(`http://127.0.0.1:${port}/`, d), { code: "PERILINK_SERVER_CHANGED" });
  const trusting = dispatcher({ identityTtlMs: 0, trustNew: true });
  assert.equal((await get(`http://127.0.0.1:${port}/`, trusting)).status, 200);
});
