import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { sleep, waitFor } from "../helpers/fixtures.ts";
import { tcpConnectionsTo } from "../helpers/os_sockets.ts";
import { FakeServer } from "./fake_server.ts";

const closedClient = (e: unknown): boolean => (e as { code?: string }).code === "PERILINK_CLIENT_CLOSED";

for (const how of [
  { name: "while the session handshake waits for the server (UDP-identified)", udp: true, helloAfterMs: -1 },
  { name: "when the server's hello arrives after close() began (UDP-identified)", udp: true, helloAfterMs: 150 },
  { name: "during the TCP-fallback handshake of identification", udp: false, helloAfterMs: 150 },
]) {
  test(`close() ${how.name}: the connect rejects with PERILINK_CLIENT_CLOSED and no socket is left`, async () => {
    const fake = await new FakeServer({
      udp: how.udp,
      onHello: (conn) => {
        if (how.helloAfterMs >= 0) setTimeout(() => conn.socket.write(fake.helloFor(conn)), how.helloAfterMs);
        return true;
      },
    }).start();
    const c = createClient({ lingerMs: 0, probeTimeoutMs: 100 });
    const pending = c.connect({ host: fake.host, port: fake.port, app: "a" }).then(
      (link) => link,
      (e: unknown) => e,
    );
    await waitFor(() => fake.connections.length === 1, "the handshake to start");
    await c.close();
    assert.equal(tcpConnectionsTo([fake.port]), 0, "no socket of the client is open once close() resolved");
    const outcome = await pending;
    assert.ok(closedClient(outcome), `the connect rejects with PERILINK_CLIENT_CLOSED, got ${String(outcome)}`);
    await sleep(Math.max(0, how.helloAfterMs) + 100);
    assert.equal(tcpConnectionsTo([fake.port]), 0, "and none opens later");
    assert.equal(c.socketsInUse, 0, "every socket slot is back");
  });
}

test("connect() after close() rejects with PERILINK_CLIENT_CLOSED", async () => {
  const c = createClient();
  await c.close();
  await assert.rejects(c.connect({ host: "127.0.0.1", port: 9, app: "a" }), closedClient);
});

test("close() with open links and lingerMs 0 resolves only after every session's socket has closed", async () => {
  const fake = await new FakeServer().start();
  const c = createClient({ lingerMs: 0, probeTimeoutMs: 500 });
  const link = await c.connect({ host: fake.host, port: fake.port, app: "a" });
  assert.equal((await link.request("x")).toString(), "x");
  await c.close();
  assert.equal(c.socketsInUse, 0, "every session closed before close() resolved");
  assert.equal(tcpConnectionsTo([fake.port]), 0);
});
