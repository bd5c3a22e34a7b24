import assert from "node:assert/strict";
import net from "node:net";
import { after, test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { expectServer } from "../../src/client/client_handshake.ts";
import { FrameType, WireError } from "../../src/protocol/constants.ts";
import { encodeCodedReason } from "../../src/protocol/payloads.ts";
import type { SessionApp } from "../../src/server/app.ts";
import { CLIENT_HELLO_V2_SIZE } from "../../src/protocol/sealed_handshake.ts";
import { portOf, sleep, testServer, waitFor } from "../helpers/fixtures.ts";
import { FakeServer } from "./fake_server.ts";

async function session(host: string, port: number): Promise<ClientSession> {
  const s = await ClientSession.connect({ host, port, timeoutMs: 3000 });
  after(() => s.destroy());
  return s;
}

/** Resolves to "settled" or "stuck" after `ms`. */
const within = (p: Promise<unknown>, ms: number): Promise<string> =>
  Promise.race([p.then(() => "settled", () => "settled"), sleep(ms).then(() => "stuck")]);

test("close() resolves once a GOAWAY refused every pending request, without waiting for the server to close", async () => {
  const fake = await new FakeServer({ onFrame: (_c, type) => type === FrameType.Request }).start(); // requests never answered
  const s = await session(fake.host, fake.port);
  const ch = await s.openChannel("a");
  const pending = ch.request("never answered", { timeoutMs: 0 }).then(
    () => null,
    (e: unknown) => e,
  );
  await waitFor(() => fake.connections[0]!.frames.some((f) => f.type === FrameType.Request), "the request to reach the server");
  const closing = s.close();
  fake.send(fake.connections[0]!, FrameType.GoAway, 0, 0, encodeCodedReason(WireError.ShuttingDown, "going away"));
  const err = await pending;
  assert.equal((err as { code?: string }).code, "PERILINK_REQUEST_REFUSED", "the request above the mark is refused");
  assert.equal(await within(closing, 1000), "settled", "close() does not wait for the server once nothing is pending");
  assert.equal(s.closed, true);
});

test("cancelling requests frees their in-flight slots at once: new requests on the same session are sent and answered", async () => {
  const app: SessionApp = { request: (p) => (Buffer.from(p).toString() === "hang" ? new Promise(() => {}) : p) };
  const server = await testServer({ appObject: app, limits: { maxInflightPerSession: 2 } });
  const s = await session("127.0.0.1", server.endpoints()[0]!.port);
  assert.equal(s.serverLimits.maxInflight, 2);
  const ch = await s.openChannel("a");
  const ac = new AbortController();
  const hung = Array.from({ length: 4 }, () => ch.request("hang", { signal: ac.signal, timeoutMs: 0 }).catch((e: unknown) => e));
  await sleep(50);
  ac.abort(new Error("the application gave up"));
  for (const e of await Promise.all(hung)) assert.equal((e as Error).message, "the application gave up");
  const next = Promise.all(Array.from({ length: 4 }, (_, i) => ch.request(`after${i}`, { timeoutMs: 0 })));
  assert.equal(await within(next, 1000), "settled", "requests after the cancel are answered without waiting for the hung handlers");
  assert.deepEqual((await next).map(String), ["after0", "after1", "after2", "after3"]);
  assert.equal(server.status().counters.sessionsAccepted, 1, "on the same session");
});

test("a request whose deadline passes frees its slot at once and the next queued request is sent", async () => {
  const app: SessionApp = { request: (p) => (Buffer.from(p).toString() === "hang" ? new Promise(() => {}) : p) };
  const server = await testServer({ appObject: app, limits: { maxInflightPerSession: 1 } });
  const s = await session("127.0.0.1", server.endpoints()[0]!.port);
  const ch = await s.openChannel("a");
  const slow = ch.request("hang", { timeoutMs: 150 }).catch((e: unknown) => e);
  const queued = ch.request("queued", { timeoutMs: 0 });
  assert.equal((await slow as { code?: string }).code, "PERILINK_REQUEST_TIMEOUT");
  assert.equal(await within(queued, 1000), "settled");
  assert.equal((await queued).toString(), "queued");
});

test("a hello from another key or identifier than the one expected fails before the client proves its key", async () => {
  const server = await testServer();
  const sent: number[] = [];
  const relay = net.createServer((c) => {
    const up = net.connect(portOf(server), "127.0.0.1");
    let n = 0;
    c.on("data", (b: Buffer) => void (n += b.length));
    c.on("close", () => sent.push(n));
    c.pipe(up).pipe(c);
    c.on("error", () => up.destroy());
    up.on("error", () => c.destroy());
  });
  await new Promise<void>((r) => relay.listen(0, "127.0.0.1", r));
  after(() => relay.close());
  const port = (relay.address() as net.AddressInfo).port;
  const real = { serverId: server.identity.serverId, publicKey: server.identity.publicKey };
  const otherKey = Buffer.from(server.identity.publicKey).fill(7, 0, 1);
  await assert.rejects(ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000, checkServer: expectServer({ ...real, publicKey: otherKey }) }), { code: "PERILINK_KEY_MISMATCH" });
  await assert.rejects(ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000, checkServer: expectServer({ ...real, serverId: "00000000-0000-4000-8000-000000000000" }) }), { code: "PERILINK_SERVER_CHANGED" });
  await waitFor(() => sent.length === 2, "both relayed connections to close");
  assert.deepEqual(sent, [CLIENT_HELLO_V2_SIZE, CLIENT_HELLO_V2_SIZE], "the server got the client's hello and nothing more: no proof, no frame");
  const ok = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000, checkServer: expectServer(real) });
  ok.destroy();
});

test("a channel open the server never answers fails with PERILINK_REQUEST_TIMEOUT after requestTimeoutMs, not never", async () => {
  const fake = await new FakeServer({ onFrame: (_c, type) => type === FrameType.ChannelOpen }).start(); // opens never answered
  const s = await ClientSession.connect({ host: fake.host, port: fake.port, timeoutMs: 3000, requestTimeoutMs: 300 });
  after(() => s.destroy());
  const t0 = performance.now();
  await assert.rejects(s.openChannel("never-answered"), { code: "PERILINK_REQUEST_TIMEOUT", message: /did not answer in 300 ms/ });
  assert.ok(performance.now() - t0 < 2000);
  // An open that is answered is unaffected.
  const ok = await new FakeServer().start();
  const s2 = await ClientSession.connect({ host: ok.host, port: ok.port, timeoutMs: 3000, requestTimeoutMs: 300 });
  after(() => s2.destroy());
  const ch = await s2.openChannel("answered");
  await sleep(400);
  assert.equal((await ch.request("still open")).toString(), "still open");
});
