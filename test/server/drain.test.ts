import assert from "node:assert/strict";
import http from "node:http";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import net from "node:net";
import { test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { identifyUdp } from "../../src/client/identify.ts";
import { RequestRefusedError } from "../../src/errors.ts";
import type { SessionApp } from "../../src/server/app.ts";
import { connect, portOf, sleep, testServer, waitFor } from "../helpers/fixtures.ts";

const slowEcho = (ms: number): SessionApp => ({
  async request(p) {
    await sleep(ms);
    return p;
  },
});

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", () => resolve(true));
  });
}

test("completes every request in flight at drain(), then closes; new connections are refused", async () => {
  const server = await testServer({ appObject: slowEcho(300) });
  const port = portOf(server);
  const sessions = await Promise.all([connect(server), connect(server), connect(server)]);
  const pending: Promise<Buffer>[] = [];
  for (const [i, s] of sessions.entries()) {
    const ch = await s.openChannel(`app${i}`);
    for (let j = 0; j < 10; j++) pending.push(ch.request(`${i}-${j}`));
  }
  await waitFor(() => server.status().inflight === 30, "30 requests to start");
  const drained = server.drain(5000);
  await sleep(20);
  assert.equal(await refusesConnections(port), true, "no new connection is accepted during drain");
  const replies = await Promise.all(pending);
  assert.deepEqual(
    replies.map((r) => r.toString()),
    sessions.flatMap((_, i) => Array.from({ length: 10 }, (_, j) => `${i}-${j}`)),
  );
  await drained;
  assert.equal(server.status().sessions, 0);
  assert.equal(server.status().accepting, false);
  await assert.rejects(identifyUdp("127.0.0.1", port, { timeoutMs: 300 }), "the UDP responder is gone too");
});

test("sends GOAWAY: requests started after it are refused with a retry-safe error", async () => {
  const server = await testServer({ appObject: slowEcho(200) });
  const s = await connect(server);
  const ch = await s.openChannel("a");
  const first = ch.request("before");
  await waitFor(() => server.status().inflight === 1, "the first request to start");
  const goaway = new Promise<number>((r) => s.once("goaway", (last: number) => r(last)));
  const drained = server.drain(5000);
  assert.equal(await goaway, 1, "GOAWAY names stream 1 as the last one processed");
  await assert.rejects(ch.request("after"), RequestRefusedError);
  assert.equal((await first).toString(), "before");
  await drained;
});

test("closes sessions still running at the drain deadline", async () => {
  const never: SessionApp = { request: () => new Promise(() => {}) };
  const server = await testServer({ appObject: never });
  const ch = await (await connect(server)).openChannel("stuck");
  const outcome = ch.request("forever").then(() => null, (e: unknown) => e);
  await waitFor(() => server.status().inflight === 1, "the request to start");
  const t0 = Date.now();
  await server.drain(300);
  assert.ok(Date.now() - t0 < 2000);
  assert.equal(((await outcome) as { code?: string }).code, "PERILINK_SESSION_CLOSED");
});

test("raw mode: serves a node:http server on the managed listeners with the identity responder beside it", async () => {
  const app = { createServer: () => http.createServer((_req, res) => res.end("hello from http")) };
  const server = await testServer({ appObject: app, listen: ["127.0.0.1:0", "[::1]:0"] });
  for (const ep of server.endpoints()) {
    const host = ep.family === 6 ? `[${ep.address}]` : ep.address;
    const res = await fetch(`http://${host}:${ep.port}/`);
    assert.equal(await res.text(), "hello from http");
    assert.equal((await identifyUdp(ep.address, ep.port)).serverId, server.serverId);
  }
  assert.equal(server.status().mode, "raw");
});

test("raw mode: a response that says Connection: keep-alive leaves its connection open for the next request", async () => {
  const server = await testServer({ appObject: { createServer: () => http.createServer((_req, res) => res.end("ok")) } });
  const sock = net.connect(portOf(server), "127.0.0.1");
  let data = "";
  let ended = false;
  sock.setEncoding("utf8").on("data", (d: string) => (data += d));
  sock.on("end", () => (ended = true));
  sock.on("error", () => (ended = true));
  const answered = (n: number): boolean => (data.match(/HTTP\/1\.1 200 OK/g) ?? []).length >= n && data.endsWith("ok");
  try {
    sock.write("GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
    await waitFor(() => answered(1) || ended, "the first response");
    if (/\r\nconnection: keep-alive\r\n/i.test(data)) {
      await sleep(200);
      assert.equal(ended, false, "the connection it said it keeps alive is still open");
      sock.write("GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
      await waitFor(() => answered(2) || ended, "the second response");
      assert.ok(answered(2), `the next request on it was answered: ${JSON.stringify(data)}`);
    } else {
      // Deno's node:http ends a connection handed to it after each response: raw mode says so there.
      assert.equal(detectRuntime().name, "deno", `Node.js keeps the connection alive: ${JSON.stringify(data)}`);
      assert.match(data, /\r\nconnection: close\r\n/i);
    }
  } finally {
    sock.destroy();
  }
});

test("raw mode: drain lets a slow HTTP request finish with its full body and refuses new connections", async () => {
  const app = {
    createServer: () =>
      http.createServer((_req, res) => {
        res.write("part1-");
        setTimeout(() => res.end("part2"), 500);
      }),
  };
  const server = await testServer({ appObject: app });
  const port = portOf(server);
  const agent = new http.Agent({ keepAlive: true });
  const body = new Promise<string>((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, agent }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve(text));
      res.on("error", reject);
    }).on("error", reject);
  });
  await waitFor(() => server.status().sessions === 1, "the HTTP connection");
  const drained = server.drain(5000);
  await sleep(20);
  assert.equal(await refusesConnections(port), true);
  assert.equal(await body, "part1-part2");
  await drained;
  agent.destroy();
  assert.equal(server.status().sessions, 0);
});

test("a session client sees the server refuse new sessions once it drains", async () => {
  const server = await testServer();
  const port = portOf(server);
  await server.drain(500);
  await assert.rejects(ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 500 }));
});

test("drain() with a deadline past 2^31−1 ms is refused before anything stops: a request in flight is not cut", async () => {
  const server = await testServer({ appObject: slowEcho(200) });
  const session = await ClientSession.connect({ host: "127.0.0.1", port: portOf(server) });
  try {
    const ch = await session.openChannel("demo");
    const inFlight = ch.request("still here");
    await assert.rejects(server.drain(3e9), (err: Error & { code?: string }) => err.code === "PERILINK_CONFIG" && /drain\(\): "timeoutMs"/.test(err.message));
    assert.equal((await inFlight).toString(), "still here");
    assert.equal((await ch.request("and after")).toString(), "and after", "the server still serves");
  } finally {
    await session.close();
    await server.drain(1000);
  }
});

for (const shape of ["synchronous", "async", "streaming"] as const) {
  test(`raw mode: once a drain begins, every response of a ${shape} handler says Connection: close, and a busy keep-alive client moves on at once`, async (t) => {
    if (!detectRuntime().keepsHandedHttpConnections) {
      t.skip(`raw mode says Connection: close to every response on ${detectRuntime().name} (its node:http ends a handed connection after each one): there is no busy keep-alive connection to move`);
      return;
    }
    const handler = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
      if (shape === "synchronous") res.end("ok");
      else if (shape === "async") void Promise.resolve().then(() => res.end("ok"));
      else {
        res.write("o");
        setImmediate(() => res.end("k"));
      }
    };
    const server = await testServer({ appObject: { createServer: () => http.createServer(handler) } });
    const port = portOf(server);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = (): Promise<{ body: string; connection: string | undefined }> =>
      new Promise((resolve, reject) => {
        http.get({ host: "127.0.0.1", port, agent }, (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (body += c));
          res.on("end", () => resolve({ body, connection: res.headers.connection }));
          res.on("error", reject);
        }).on("error", reject);
      });
    // A client that keeps its one connection busy.
    const seen: { connection: string | undefined; afterDrain: boolean }[] = [];
    let draining = false;
    let stop = false;
    const busy = (async () => {
      for (let i = 0; i < 2000 && !stop; i++) {
        const r = await get().catch(() => null);
        if (r === null) break;
        assert.equal(r.body, "ok");
        seen.push({ connection: r.connection, afterDrain: draining });
      }
    })();
    await waitFor(() => seen.length >= 20, "the busy client's first responses");
    const t0 = performance.now();
    draining = true;
    await server.drain(5000);
    const drainMs = performance.now() - t0;
    stop = true;
    await busy;
    agent.destroy();
    const after = seen.filter((s) => s.afterDrain);
    assert.ok(after.length >= 1, "a response came during the drain");
    assert.equal(after[after.length - 1]!.connection, "close", "the last response told the client to close");
    assert.ok(drainMs < 1000, `the drain ended when the busy connection closed, not at the deadline: ${Math.round(drainMs)} ms`);
  });
}

test("raw mode: a server the app made listen late (after createServer() returned, past the load check) is closed at the drain, so nothing keeps the process alive", async () => {
  let appServer: http.Server | null = null;
  const server = await testServer({
    appObject: {
      createServer: () => {
        const s = http.createServer((_req, res) => res.end("ok"));
        appServer = s;
        setTimeout(() => s.listen(0, "127.0.0.1"), 50); // after the load check
        return s;
      },
    },
  });
  await waitFor(() => appServer?.listening === true, "the app's own listen to bind");
  await server.drain(1000);
  await waitFor(() => appServer?.listening === false, "the drain to close it");
});
