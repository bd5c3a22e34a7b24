/**
 * Opening a session to a server with several addresses: attempts start in
 * preference order, each next one a short delay after the one before (or at
 * once when it failed), as in Happy Eyeballs (RFC 8305); the first that
 * answers as the server wins and the others are let go.
 */
import { ClientStats } from "../../src/client/client_stats.ts";
import assert from "node:assert/strict";
import net from "node:net";
import { after, test } from "node:test";
import { processClientKey } from "../../src/client/client_key.ts";
import { IdentityBook } from "../../src/client/identity_book.ts";
import { ServerEntry, type Address, type EntryHost } from "../../src/client/server_entry.ts";
import { SocketLimiter } from "../../src/client/socket_limiter.ts";
import { silentLogger } from "../../src/logger.ts";
import { portOf, testServer, waitFor } from "../helpers/fixtures.ts";

/** A TCP listener that accepts and never says a word: an address whose line eats the handshake. */
async function silentListener(): Promise<{ port: number; accepted: () => number }> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const srv = net.createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  after(() => {
    for (const s of sockets) s.destroy();
    srv.close();
  });
  return { port: (srv.address() as net.AddressInfo).port, accepted: () => accepted };
}

function entryHost(limiter: SocketLimiter, shutdown: AbortController): EntryHost {
  let n = 1;
  return {
    limiter,
    stats: new ClientStats(),
    book: new IdentityBook(30_000, 64),
    log: silentLogger,
    lingerMs: 0,
    handshakeTimeoutMs: 3000,
    requestTimeoutMs: 5000,
    sessionOptions: { silenceMs: 500, pingTimeoutMs: 1000, clientKey: Promise.resolve(processClientKey()) },
    signal: shutdown.signal,
    firstStreamId: undefined,
    nextSessionNumber: () => n++,
    entryIdle: () => {},
    rank: <A extends Address>(a: readonly A[]): A[] => [...a],
    lineFailed: () => {},
  };
}

test("a first address that accepts TCP but never answers the handshake does not hold the open for its timeout: the next address is tried 250 ms later and wins", async () => {
  const server = await testServer();
  const silent = await silentListener();
  const limiter = new SocketLimiter(4, 4, 5000);
  const shutdown = new AbortController();
  const entry = new ServerEntry(entryHost(limiter, shutdown), server.serverId, Buffer.from(server.identity.publicKey));
  entry.addAddress({ host: "127.0.0.1", port: silent.port });
  entry.addAddress({ host: "127.0.0.1", port: portOf(server) });
  const start = performance.now();
  const live = await entry.session();
  const ms = performance.now() - start;
  try {
    assert.equal(live.address.port, portOf(server));
    assert.equal(silent.accepted(), 1, "the preferred address was tried first");
    assert.ok(ms < 1500, `the open took ${ms.toFixed(0)} ms, not the 3000 ms handshake timeout`);
    await waitFor(() => limiter.used === 1, "the losing attempt's socket slot to come back", 2000);
  } finally {
    shutdown.abort();
    await entry.close();
  }
  assert.equal(limiter.used, 0);
});

test("with no spare socket the attempts run one after another, and the open still succeeds", async () => {
  const server = await testServer();
  const silent = await silentListener();
  const limiter = new SocketLimiter(1, 4, 5000);
  const shutdown = new AbortController();
  const host = { ...entryHost(limiter, shutdown), handshakeTimeoutMs: 600 };
  const entry = new ServerEntry(host, server.serverId, Buffer.from(server.identity.publicKey));
  entry.addAddress({ host: "127.0.0.1", port: silent.port });
  entry.addAddress({ host: "127.0.0.1", port: portOf(server) });
  try {
    const live = await entry.session();
    assert.equal(live.address.port, portOf(server));
    assert.equal(limiter.used, 1);
  } finally {
    shutdown.abort();
    await entry.close();
  }
  assert.equal(limiter.used, 0);
});
