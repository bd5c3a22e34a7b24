import assert from "node:assert/strict";
import net from "node:net";
import { after, test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import type { LinkMove, LinkState } from "../../src/client/link.ts";
import { FrameType } from "../../src/protocol/constants.ts";
import { FakeServer } from "./fake_server.ts";
import { freePort } from "../helpers/free_port.ts";
import { portOf, sleep, tempDir, testServer, waitFor } from "../helpers/fixtures.ts";
import { twoAddresses } from "../helpers/two_addresses.ts";


test("a link says where it stands: connecting, ready, moving on a drain, ready again; `moved` names the reason (upgrade)", async () => {
  const stateDir = tempDir();
  const port = await freePort();
  const first = await testServer({ stateDir, listen: [`127.0.0.1:${port}`] });
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port, app: "a" });
  assert.equal(link.state, "ready");
  const states: LinkState[] = [];
  const moves: LinkMove[] = [];
  link.on("statechange", (s: LinkState) => states.push(s));
  link.on("moved", (m: LinkMove) => moves.push(m));
  // The same server (same state directory) comes back on the same port after a drain: an upgrade, as the client sees it.
  const draining = first.drain(2000);
  await draining;
  const second = await testServer({ stateDir, listen: [`127.0.0.1:${port}`] });
  assert.equal((await link.request("after", { waitForReady: true, timeoutMs: 5000 })).toString(), "after");
  await waitFor(() => moves.length === 1, "the moved event");
  assert.equal(moves[0]!.reason, "upgrade");
  assert.notEqual(moves[0]!.from.sessionNumber, moves[0]!.to.sessionNumber);
  assert.equal(link.state, "ready");
  assert.ok(states.includes("moving"), `states: ${states.join(" → ")}`);
  assert.equal(second.serverId, first.serverId);
});

test("moved fires with reason failover when the link's address goes and another of the server's carries on", async () => {
  const { link, dropFirst } = await twoAddresses();
  const moved = new Promise<LinkMove>((r) => link.once("moved", r));
  await dropFirst();
  const m = await moved;
  assert.equal(m.reason, "failover");
  assert.equal(m.from.address, "127.0.0.1");
  assert.equal(m.to.address, "::1");
});

test("every address down: the link goes offline and back to ready by itself (backoff); waitForReady rides out a restart", async () => {
  const stateDir = tempDir();
  const port = await freePort();
  const first = await testServer({ stateDir, listen: [`127.0.0.1:${port}`] });
  const client = createClient({ lingerMs: 0, stateDir: false, requestTimeoutMs: 10_000 });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port, app: "a" });
  const states: LinkState[] = [];
  link.on("statechange", (s: LinkState) => states.push(s));
  await first.drain(500); // the device reboots: nothing listens for a while
  await waitFor(() => link.state === "offline", "the link to go offline");
  // Without waitForReady a request fails at once; with it, it waits for the server.
  await assert.rejects(link.request("now"), (e: unknown) => (e as { code?: string }).code === "PERILINK_UNREACHABLE");
  const waiting = link.request("later", { waitForReady: true, timeoutMs: 8000 });
  await sleep(700);
  await testServer({ stateDir, listen: [`127.0.0.1:${port}`] });
  assert.equal((await waiting).toString(), "later");
  await waitFor(() => link.state === "ready", "ready again");
  assert.ok(states.includes("offline") && states.at(-1) === "ready", `states: ${states.join(" → ")}`);
});

test("waitForReady gives up at the request's deadline with PERILINK_REQUEST_TIMEOUT", async () => {
  const server = await testServer();
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "a" });
  await server.drain(500);
  const t0 = performance.now();
  await assert.rejects(link.request("x", { waitForReady: true, timeoutMs: 800 }), (e: unknown) => (e as { code?: string }).code === "PERILINK_REQUEST_TIMEOUT");
  const ms = performance.now() - t0;
  assert.ok(ms >= 700 && ms < 3000, `gave up after ${ms.toFixed(0)} ms`);
});

test("20 links of an unreachable server share one reconnect schedule: a handful of tries, not 20 times as many", async () => {
  const port = await freePort();
  const server = await testServer({ listen: [`127.0.0.1:${port}`] });
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const links = [];
  for (let i = 0; i < 20; i++) links.push(await client.connect({ host: "127.0.0.1", port, app: `app${i}` }));
  await server.drain(500);
  // Something that accepts and hangs up at once: each try of the client is one connection here.
  let tries = 0;
  const sink = net.createServer((s) => {
    tries++;
    s.destroy();
  });
  await new Promise<void>((r) => sink.listen(port, "127.0.0.1", () => r()));
  after(() => sink.close());
  tries = 0;
  await sleep(2500);
  const seen = tries;
  assert.ok(links.every((l) => l.state === "offline"), "every link offline");
  assert.ok(seen >= 2 && seen <= 12, `${seen} tries in 2.5 s for 20 links`);
});

test("a server whose sessions die young (it closes each one at once) is tried again with backoff, not in a tight loop", async () => {
  const fake = await new FakeServer({
    onFrame: (conn, type) => {
      if (type === FrameType.ChannelOpen) conn.socket.destroy(); // accepts, shakes hands, then hangs up
      return type === FrameType.ChannelOpen;
    },
  }).start();
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  await client.connect({ host: "127.0.0.1", port: fake.port, app: "a" });
  const before = fake.connections.length;
  await sleep(2500);
  const tries = fake.connections.length - before;
  assert.ok(tries <= 15, `${tries} sessions in 2.5 s`);
});
