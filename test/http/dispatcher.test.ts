import assert from "node:assert/strict";
import dgram from "node:dgram";
import http from "node:http";
import net from "node:net";
import { after, test } from "node:test";
import { fetch as undiciFetch, request } from "undici";
import { createDispatcher, type DispatcherOptions } from "../../src/http.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { loopback } from "../helpers/two_addresses.ts";
import { sleep, tempDir, testServer, waitFor } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/free_port.ts";
import { startDnsmasqOnLoopback, untilDnsAnswers } from "../helpers/name_peers.ts";
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
  const dnsPort = await freePort();
  const dns = startDnsmasqOnLoopback(dnsPort, ["printer.test,127.0.0.1,::1", "printer-alias.test,127.0.0.1,::1", "late.test,::1"]);
  if ("skip" in dns) return t.skip(dns.skip);
  after(() => dns.child.kill());
  await untilDnsAnswers(dnsPort, "printer.test");
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

test("the socket limit holds across servers: an idle server's keep-alive socket is given up for another, busy ones are not (PERILINK_SOCKET_LIMIT after the wait)", { skip: COUNTS }, async () => {
  const release: (() => void)[] = [];
  const hold: http.RequestListener = (req, res) => {
    req.resume();
    if (req.url === "/hold") release.push(() => res.end("{}"));
    else res.end("{}");
  };
  const servers = await Promise.all([rawServer(hold), rawServer(hold), rawServer(hold)]);
  const d = dispatcher({ maxSockets: 2, maxWaiting: 1, waitTimeoutMs: 300, pool: { keepAliveTimeout: 60_000 } });
  const url = (i: number, p = "/"): string => `http://127.0.0.1:${servers[i]!.port}${p}`;
  await get(url(0), d);
  await get(url(1), d);
  assert.equal(d.socketsInUse, 2);
  // Both idle: the third server takes the least recently used one's socket at once.
  assert.equal((await get(url(2), d)).status, 200);
  assert.equal(d.socketsInUse, 2);
  assert.equal(servers[0]!.connections(), 1);
  // Two requests held on servers 1 and 2: server 0 waits for a slot, then gives up.
  const held = [request(url(1, "/hold"), { dispatcher: d }), request(url(2, "/hold"), { dispatcher: d })];
  await waitFor(() => release.length === 2, "the held requests to arrive");
  const started = Date.now();
  await assert.rejects(get(url(0), d), { code: "PERILINK_SOCKET_LIMIT", message: /raise maxSockets/ });
  assert.ok(Date.now() - started >= 250, "it waited for a slot first");
  assert.equal(d.socketsInUse, 2);
  for (const r of release) r();
  for (const r of await Promise.all(held)) assert.equal(r.statusCode, 200), await r.body.dump();
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

/** dnsmasq on loopback with these records (`name,address…`): the resolution option for it, or a reason to skip. */
async function dnsFor(records: string[]): Promise<{ resolution: DispatcherOptions["resolution"] } | { skip: string }> {
  const port = await freePort();
  const dns = startDnsmasqOnLoopback(port, records);
  if ("skip" in dns) return dns;
  after(() => dns.child.kill());
  await untilDnsAnswers(port, records[0]!.split(",")[0]!);
  return { resolution: { nameServers: [`127.0.0.1:${port}`], order: ["dns"] } };
}

/** A plain HTTP server answering with its own name, counting requests. */
async function plainHttp(name: string, host: string, port = 0): Promise<{ port: number; seen: string[] }> {
  const seen: string[] = [];
  const s = http.createServer((req, res) => {
    seen.push(req.url ?? "");
    res.end(JSON.stringify({ by: name, host: req.headers.host }));
  });
  await new Promise<void>((r) => s.listen(port, host, r));
  after(() => new Promise((r) => s.close(r)));
  return { port: (s.address() as net.AddressInfo).port, seen };
}

test("a relay that passes the server's probe on cannot join its pool: no request, by name or by the server's own address, reaches the relay's HTTP server", async (t) => {
  const first = await testServer({ listen: ["127.0.0.1:0"], appObject: { createServer: () => http.createServer((_q, s) => s.end(JSON.stringify({ by: "server" }))) } });
  const port = first.endpoints()[0]!.port;
  const names = await dnsFor([`printer.test,127.0.0.3`, `printer.test,127.0.0.1`]);
  if ("skip" in names) return t.skip(names.skip);
  // The attacker at 127.0.0.3: its own HTTP server, and a UDP relay to the real server's probe port.
  const evil = await plainHttp("attacker", "127.0.0.3", port);
  const relay = dgram.createSocket("udp4");
  const back = dgram.createSocket("udp4");
  after(() => (relay.close(), back.close()));
  let asker: dgram.RemoteInfo | null = null;
  relay.on("message", (m, r) => ((asker = r), back.send(m, port, "127.0.0.1")));
  back.on("message", (m) => asker && relay.send(m, asker.port, asker.address));
  await new Promise<void>((r) => relay.bind(port, "127.0.0.3", r));
  await new Promise<void>((r) => back.bind(0, "127.0.0.1", r));
  const d = dispatcher({ ...names });
  for (const url of [`http://printer.test:${port}/job`, `http://127.0.0.1:${port}/secret`, `http://printer.test:${port}/job2`]) {
    assert.equal((await get(url, d)).body.by, "server", url);
  }
  assert.deepEqual(evil.seen, []);
  assert.deepEqual(d.servers().map((r) => r.addresses), [["127.0.0.1"]]);
});

test("plain HTTP devices: a request for an address goes to that address only, whatever names share it", { skip: COUNTS }, async (t) => {
  const v4 = await plainHttp("v4", "127.0.0.1");
  const v6 = await plainHttp("v6", "::1", v4.port).catch(() => null);
  if (v6 === null) return t.skip("the port is taken on ::1");
  const names = await dnsFor([`both.test,127.0.0.1,::1`]);
  if ("skip" in names) return t.skip(names.skip);
  const d = dispatcher({ ...names, probeTimeoutMs: 100 });
  await get(`http://both.test:${v4.port}/`, d);
  assert.equal((await get(`http://127.0.0.1:${v4.port}/`, d)).body.by, "v4");
  assert.equal((await get(`http://[::1]:${v4.port}/`, d)).body.by, "v6");
  assert.equal((await get(`http://127.0.0.1:${v4.port}/`, d)).body.by, "v4");
});

test("a name the known-servers record ties to a perilink server is refused when it leads to a plain HTTP server (pins kept across dispatchers by close)", async (t) => {
  const server = await testServer({ listen: ["127.0.0.1:0"], appObject: { createServer: () => http.createServer((_q, s) => s.end(JSON.stringify({ by: "server" }))) } });
  const port = server.endpoints()[0]!.port;
  const stateDir = tempDir();
  const day1 = await dnsFor([`printer.test,127.0.0.1`]);
  if ("skip" in day1) return t.skip(day1.skip);
  const d1 = createDispatcher({ stateDir, ...day1 });
  assert.equal((await get(`http://printer.test:${port}/`, d1)).body.by, "server");
  await d1.close();
  const evil = await plainHttp("attacker", "127.0.0.3", port);
  const day2 = await dnsFor([`printer.test,127.0.0.3`]);
  if ("skip" in day2) return t.skip(day2.skip);
  const d2 = dispatcher({ stateDir, ...day2, probeTimeoutMs: 100 });
  await assert.rejects(get(`http://printer.test:${port}/print-job`, d2), { code: "PERILINK_SERVER_CHANGED", message: /no perilink server proves itself at 127\.0\.0\.3.*perilink forget printer\.test/ });
  assert.deepEqual(evil.seen, []);
});

test("close() lets queued requests finish, also on a server that closes every connection, and resolves", async () => {
  const srv = await rawServer((req, res) => {
    req.resume();
    res.setHeader("connection", "close");
    setTimeout(() => res.end(JSON.stringify({ url: req.url })), 20);
  });
  const d = createDispatcher({ stateDir: false });
  const all = [1, 2, 3].map((i) => get(`http://127.0.0.1:${srv.port}/${i}`, d));
  // At once: the requests are still locating their server (a slow machine once closed there and lost them).
  const closed = d.close();
  const results = await Promise.all(all);
  assert.deepEqual(results.map((r) => r.body.url), ["/1", "/2", "/3"]);
  await Promise.race([closed, sleep(3000).then(() => assert.fail("close() did not resolve"))]);
  await assert.rejects(get(`http://127.0.0.1:${srv.port}/late`, d), { code: "PERILINK_CLIENT_CLOSED" });
});

test("handlers of undici's newer form get one onRequestStart, parsed headers and the body; an abort ends the request", async () => {
  let arrived = 0;
  const srv = await rawServer((req, res) => {
    req.resume();
    arrived++;
    if (req.url === "/slow") return void setTimeout(() => res.end("late"), 2000);
    res.setHeader("x-test", "yes");
    res.end("body");
  });
  const d = dispatcher();
  const seen: string[] = [];
  let body = "";
  await new Promise<void>((resolve, reject) => {
    d.dispatch(
      { origin: `http://127.0.0.1:${srv.port}`, path: "/", method: "GET" },
      {
        onRequestStart: () => void seen.push("start"),
        onResponseStart: (_c, status, headers) => void seen.push(`${status} ${headers["x-test"]}`),
        onResponseData: (_c, chunk) => void (body += chunk.toString()),
        onResponseEnd: () => resolve(),
        onResponseError: (_c, err) => reject(err),
      },
    );
  });
  assert.deepEqual(seen, ["start", "200 yes"]);
  assert.equal(body, "body");
  const ac = new AbortController();
  const slow = request(`http://127.0.0.1:${srv.port}/slow`, { dispatcher: d, signal: ac.signal });
  await waitFor(() => arrived === 2, "the slow request to arrive");
  ac.abort();
  await assert.rejects(slow, { name: "AbortError" });
  await sleep(100);
  assert.equal(arrived, 2, "an aborted request is not sent again");
});

test("a closed dispatcher fails a request at once, for handlers of either form", async () => {
  const d = createDispatcher({ stateDir: false });
  await d.close();
  await assert.rejects(request("http://127.0.0.1:9/", { dispatcher: d }), { code: "PERILINK_CLIENT_CLOSED" });
  const err = await new Promise<Error>((resolve) => {
    d.dispatch({ origin: "http://127.0.0.1:9", path: "/", method: "GET" }, { onRequestStart: () => {}, onResponseError: (_c, e) => resolve(e) });
  });
  assert.equal((err as Error & { code?: string }).code, "PERILINK_CLIENT_CLOSED");
});
