import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { WireError } from "../../src/protocol/constants.ts";
import { sleep, tempDir, waitFor } from "../helpers/fixtures.ts";
import { nodeOnly, serveGroup } from "../helpers/group.ts";

async function groupWith(config: Record<string, unknown>) {
  const file = path.join(tempDir(), "config.json");
  await fs.writeFile(file, JSON.stringify({ dispatch: "manager", ...config }));
  return serveGroup(["--config", file]);
}

/** A raw connection that sends nothing: what it is told (a refusal's bytes) and whether it was closed. */
function silentConnection(port: number): { socket: net.Socket; got: () => Buffer; closed: () => boolean } {
  const socket = net.connect(port, "127.0.0.1");
  let got = Buffer.alloc(0);
  let closed = false;
  socket.on("data", (d: Buffer) => (got = Buffer.concat([got, d])));
  socket.on("error", () => {});
  socket.on("close", () => (closed = true));
  return { socket, got: () => got, closed: () => closed };
}

const isBusyRefusal = (b: Buffer): boolean => b.length >= 6 && b[4] === 2 && b[5] === WireError.ServerBusy;

test("manager dispatch counts a peer's connections over every service process: 8 from one address against maxSessionsPerPeer 4 over 2 processes — 4 are told ServerBusy (was: all 8 held)", async (t) => {
  if (nodeOnly(t)) return;
  const g = await groupWith({ workers: 2, workerSlots: 64, limits: { maxSessionsPerPeer: 4, handshakeTimeoutMs: 8000 } });
  const conns: ReturnType<typeof silentConnection>[] = [];
  for (let i = 0; i < 8; i++) {
    conns.push(silentConnection(g.port));
    await sleep(20);
  }
  await waitFor(() => conns.filter((c) => c.closed()).length >= 4, "4 connections to be refused", 5000);
  await sleep(200);
  const refused = conns.filter((c) => c.closed());
  assert.equal(refused.length, 4, "the 4 past the limit, and no more");
  for (const c of refused) assert.ok(isBusyRefusal(c.got()), "each was told ServerBusy, as one server tells it");
  assert.deepEqual(conns.slice(0, 4).map((c) => c.closed()), [false, false, false, false], "the first 4 are held");
  assert.equal((await g.status()).counters.connectionsRefused, 4);
  // One held connection closes: its peer may connect once more.
  conns[0]!.socket.destroy();
  await sleep(500);
  const again = silentConnection(g.port);
  await sleep(500);
  assert.equal(again.closed(), false, "a slot of the peer's freed, and the new connection is held");
  for (const c of [...conns, again]) c.socket.destroy();
});

test("manager dispatch: a connection that finds no free slot is told ServerBusy after the handshake timeout instead of waiting for ever", async (t) => {
  if (nodeOnly(t)) return;
  const g = await groupWith({ workers: 2, workerSlots: 1, limits: { handshakeTimeoutMs: 1500 } });
  // Both service processes' only slot, held by sessions that stay open.
  const holders = await Promise.all([0, 1].map(() => ClientSession.connect({ host: "127.0.0.1", port: g.port, timeoutMs: 5000 })));
  try {
    const t0 = performance.now();
    const waiting = silentConnection(g.port);
    await waitFor(() => waiting.closed(), "the queued connection to be refused", 6000);
    const ms = performance.now() - t0;
    assert.ok(isBusyRefusal(waiting.got()), `told ServerBusy (a client tries another address, or later): ${waiting.got().subarray(0, 8).toString("hex")}`);
    assert.ok(ms >= 1300 && ms < 4000, `refused after the wait: ${Math.round(ms)} ms`);
    assert.deepEqual(holders.map((h) => h.closed), [false, false], "the sessions holding the slots carry on");
  } finally {
    for (const h of holders) h.destroy();
  }
});

test("manager dispatch: connections whose client reset while they waited for a slot give their peer's count back (was: the address locked out)", async (t) => {
  if (nodeOnly(t)) return;
  const g = await groupWith({ workers: 2, workerSlots: 1, limits: { maxSessionsPerPeer: 4, handshakeTimeoutMs: 5000 } });
  const holders = [silentConnection(g.port), silentConnection(g.port)]; // both slots, from 127.0.0.1
  await sleep(200);
  for (let i = 0; i < 4; i++) {
    const s = net.connect({ port: g.port, host: "127.0.0.1", localAddress: "127.0.0.2" });
    s.on("error", () => {});
    s.on("connect", () => setTimeout(() => s.resetAndDestroy(), 50)); // queued, then reset by its client
  }
  await sleep(500);
  for (const h of holders) h.socket.destroy(); // the slots free: the dead sockets are passed on, and close there
  await sleep(1500);
  const again = net.connect({ port: g.port, host: "127.0.0.1", localAddress: "127.0.0.2" });
  let got = Buffer.alloc(0);
  again.on("data", (d: Buffer) => (got = Buffer.concat([got, d])));
  again.on("error", () => {});
  await sleep(500);
  assert.ok(!isBusyRefusal(got), "127.0.0.2 holds nothing now: not refused for maxSessionsPerPeer");
  again.destroy();
});
