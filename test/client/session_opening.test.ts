import assert from "node:assert/strict";
import net from "node:net";
import { after, test } from "node:test";
import { createClient, type ClientOptions, type PerilinkClient } from "../../src/client/client.ts";
import { FrameType, WireError } from "../../src/protocol/constants.ts";
import { encodeServerRefusalV2 } from "../../src/protocol/sealed_handshake.ts";
import { encodeCodedReason } from "../../src/protocol/payloads.ts";
import { sleep, testServer, waitFor } from "../helpers/fixtures.ts";
import { tcpConnectionsTo } from "../helpers/os_sockets.ts";
import { FakeServer, frameBytes } from "./fake_server.ts";

function client(options: ClientOptions = {}): PerilinkClient {
  // stateDir false: no known-servers record shared with other files (Deno runs them in one process, one state dir)
  const c = createClient({ lingerMs: 0, probeTimeoutMs: 100, stateDir: false, ...options });
  after(() => c.close());
  return c;
}

/** A TCP relay on 127.0.0.1 to `port`, holding the server's bytes back for `delay.ms` per connection. No UDP: probes to it go unanswered. */
async function relay(port: number, delay: { ms: number }): Promise<number> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((down) => {
    const up = net.connect({ host: "127.0.0.1", port });
    for (const s of [up, down]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    }
    down.on("close", () => up.destroy());
    up.on("close", () => down.destroy());
    down.pipe(up);
    up.pause();
    setTimeout(() => up.pipe(down), delay.ms);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  after(() => {
    for (const s of sockets) s.destroy();
    srv.close();
  });
  return (srv.address() as net.AddressInfo).port;
}

test("a TCP-fallback identification that finishes while the entry opens a session gives one session, and every socket slot comes back", async () => {
  const server = await testServer();
  const slowY = { ms: 0 };
  const portY = await relay(server.endpoints()[0]!.port, slowY);
  const portX = await relay(server.endpoints()[0]!.port, { ms: 0 });
  const c = client();
  // The client learns that Y is this server (by the TCP fallback: the relay answers no probe), then lets go of it.
  (await c.connect({ host: "127.0.0.1", port: portY, app: "prime" })).close();
  await waitFor(() => c.socketsInUse === 0, "the priming session to close");
  slowY.ms = 400; // Y's next handshake is slow: the entry is still opening when X's fallback handshake completes
  const [viaY, viaX] = await Promise.all([
    c.connect({ host: "127.0.0.1", port: portY, app: "y" }),
    c.connect({ host: "127.0.0.1", port: portX, app: "x" }),
  ]);
  assert.equal((await viaY.request("y")).toString(), "y");
  assert.equal((await viaX.request("x")).toString(), "x");
  await sleep(200);
  assert.equal(tcpConnectionsTo([portX, portY]), 1, "one session to the server, counted by the OS");
  assert.equal(c.socketsInUse, 1);
  viaY.close();
  viaX.close();
  await waitFor(() => tcpConnectionsTo([portX, portY]) === 0, "every session to close after the last link");
  // The slot comes back when the client sees its socket close, which may be a moment after the kernel drops it.
  await waitFor(() => c.socketsInUse === 0, "every socket slot to be returned");
});

for (const udp of [true, false]) {
  test(`a server hello and a GOAWAY in one read move connect() to a new session (${udp ? "UDP-identified" : "TCP-fallback"})`, async () => {
    const fake = await new FakeServer({
      udp,
      onHello: (conn, i) => {
        if (i > 0) return false;
        const goAway = frameBytes(FrameType.GoAway, 0, 0, encodeCodedReason(WireError.ShuttingDown, "replaced"));
        conn.socket.write(Buffer.concat([fake.helloFor(conn), fake.sealed(conn, goAway)]));
        return true;
      },
    }).start();
    const c = client();
    const link = await c.connect({ host: fake.host, port: fake.port, app: "a" });
    assert.equal((await link.request("served")).toString(), "served");
    assert.equal(fake.connections.length, 2, "the second session serves");
    await waitFor(() => fake.connections[0]!.socket.destroyed, "the drained session to be closed by the client");
    assert.equal(tcpConnectionsTo([fake.port]), 1);
    assert.equal(c.socketsInUse, 1);
  });
}

for (const udp of [true, false]) {
  test(`a busy server is PERILINK_SERVER_BUSY when connecting (${udp ? "UDP-identified, the entry opens the session" : "TCP-fallback handshake"})`, async () => {
    const fake = await new FakeServer({
      udp,
      onHello: (conn) => {
        conn.socket.end(encodeServerRefusalV2(WireError.ServerBusy));
        return true;
      },
    }).start();
    const c = client();
    await assert.rejects(c.connect({ host: fake.host, port: fake.port, app: "a" }), (e: unknown) => {
      assert.equal((e as { code?: string }).code, "PERILINK_SERVER_BUSY", String(e));
      return true;
    });
    assert.equal(c.socketsInUse, 0);
  });
}

test("a perilink server at its session limit is PERILINK_SERVER_BUSY for a second client", async () => {
  const server = await testServer({ limits: { maxSessions: 1 } });
  const ep = server.endpoints()[0]!;
  const first = client();
  await (await first.connect({ host: ep.address, port: ep.port, app: "holds-the-one-session" })).request("x");
  const second = client();
  await assert.rejects(second.connect({ host: ep.address, port: ep.port, app: "b" }), (e: unknown) => {
    assert.equal((e as { code?: string }).code, "PERILINK_SERVER_BUSY", String(e));
    return true;
  });
});
