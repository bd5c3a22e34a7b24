import assert from "node:assert/strict";
import { test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { ServerBusyError } from "../../src/errors.ts";
import { FrameType } from "../../src/protocol/constants.ts";
import { createLogger } from "../../src/logger.ts";
import type { SessionApp } from "../../src/server/app.ts";
import { connect, portOf, sleep, testServer, waitFor } from "../helpers/fixtures.ts";
import { channelOpen, frame, hello, rawPeer, sealedPeer, type SealedPeer } from "../helpers/raw_peer.ts";
import { serverProcess, type ServerProcess } from "../helpers/server_process.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";

const MiB = 1024 * 1024;

/**
 * A peer that completes the handshake (and opens channel 1), then writes
 * `count` frames made by `make(i)` as fast as its socket takes them, and never
 * reads a byte. Since it never reads, it learns that the server closed the
 * session only by writing: after the flood it sends a small PING every
 * 100 ms (for 20 s at most).
 */
async function flood(port: number, count: number, make: (i: number) => Buffer, localAddress?: string): Promise<SealedPeer> {
  const peer = await sealedPeer(port, { read: false, localAddress, maxFrame: 1024 * 1024 });
  peer.write(frame(FrameType.ChannelOpen, 1, 0, channelOpen()));
  void (async () => {
    for (let i = 1; i <= count && !peer.sock.destroyed; i++) {
      if (!peer.write(make(i))) {
        await Promise.race([new Promise((r) => peer.sock.once("drain", r)), peer.closed]);
      }
    }
    const ping = frame(FrameType.Ping, 0, 0, Buffer.alloc(8));
    for (let i = 0; i < 200 && !peer.sock.destroyed; i++, await sleep(100)) peer.write(ping);
  })();
  return peer;
}

const MB = Buffer.alloc(1_000_000, 0x5a);
/** 1 MB PINGs. */
const bigPing = (i: number): Buffer => frame(FrameType.Ping, 0, i, MB);
/** 1 MB requests to the echo app: each answer is 1 MB the peer never reads. */
const bigEcho = (i: number): Buffer => frame(FrameType.Request, 1, i, MB);

/** A legitimate client that sends one request every `everyMs` until stopped; counts answers and failures. */
function steadyClient(port: number, everyMs = 20): { stop(): Promise<{ ok: number; failed: string[] }> } {
  let running = true;
  const failed: string[] = [];
  let ok = 0;
  const done = (async () => {
    const session = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 5000 });
    const ch = await session.openChannel("legit");
    for (let i = 0; running && i < 5000; i++) {
      try {
        const answer = await ch.request(`r${i}`, { timeoutMs: 5000 });
        if (answer.toString() === `r${i}`) ok++;
        else failed.push(`wrong answer to r${i}`);
      } catch (err) {
        failed.push(String(err));
      }
      await sleep(everyMs);
    }
    session.destroy();
  })();
  return {
    async stop() {
      running = false;
      await done;
      return { ok, failed };
    },
  };
}

/** Samples the server's RSS every 50 ms while `during` runs; returns the peak. */
async function peakRss(server: ServerProcess, during: Promise<unknown>): Promise<number> {
  let peak = server.rss();
  let finished = false;
  void during.finally(() => (finished = true));
  while (!finished) {
    peak = Math.max(peak, server.rss());
    await sleep(50);
  }
  return Math.max(peak, server.rss());
}

/** The server's RSS while the legitimate clients run and nobody attacks: the highest of 10 samples over 500 ms. */
async function baselineRss(server: ServerProcess): Promise<number> {
  await sleep(1000); // start-up garbage, the legitimate sessions, the JIT
  let high = 0;
  for (let i = 0; i < 10; i++, await sleep(50)) high = Math.max(high, server.rss());
  return high;
}

/** Runs `attackers` against a fresh server process while legitimate clients keep asking; returns what happened (RSS growth over the RSS before the attack). */
async function underAttack(
  limits: Record<string, number>,
  attackers: (port: number) => Promise<SealedPeer[]>,
): Promise<{ grewMiB: number; allClosed: boolean; legit: { ok: number; failed: string[] }[]; log: string }> {
  const server = await serverProcess({ limits });
  const legit = [steadyClient(server.port), steadyClient(server.port)];
  const idle = await baselineRss(server);
  const peers = await attackers(server.port);
  const allClosed = Promise.race([Promise.all(peers.map((a) => a.closed)).then(() => true), sleep(20_000).then(() => false)]);
  const peak = await peakRss(server, allClosed);
  const results = await Promise.all(legit.map((l) => l.stop()));
  for (const a of peers) a.sock.destroy();
  return { grewMiB: (peak - idle) / MiB, allClosed: await allClosed, legit: results, log: server.log() };
}

function assertServedThroughout(legit: { ok: number; failed: string[] }[]): void {
  for (const r of legit) {
    assert.deepEqual(r.failed, [], "every legitimate request was answered");
    assert.ok(r.ok > 10, `legitimate requests answered throughout (${r.ok})`);
  }
}

test("a peer that sends 1 MB PINGs and never reads is closed at once and costs the server at most 32 MiB", async () => {
  const r = await underAttack({}, async (port) => [await flood(port, 150, bigPing)]);
  assert.ok(r.grewMiB <= 32, `server RSS grew by ${r.grewMiB.toFixed(1)} MiB, bound 32 MiB`);
  assert.ok(r.allClosed, "the flooding session was closed");
  assert.match(r.log, /"session_protocol_error".*PING/, "the log says why");
  assertServedThroughout(r.legit);
});

test("a peer that floods small PINGs and never reads is held to maxSessionOutputBytes and cut off after writeTimeoutMs", async () => {
  const ping = frame(FrameType.Ping, 0, 0, Buffer.alloc(64));
  const burst = Buffer.concat(Array.from({ length: 1000 }, () => ping)); // 80 KB of PINGs a write
  const r = await underAttack({ writeTimeoutMs: 1500 }, async (port) => [await flood(port, 2000, () => burst)]);
  assert.ok(r.grewMiB <= 32, `server RSS grew by ${r.grewMiB.toFixed(1)} MiB, bound 32 MiB`);
  assert.ok(r.allClosed, "the flooding session was cut off");
  assert.match(r.log, /"session_cut_off".*"reason":"write_timeout"/, "the log says why the session was cut off");
  assertServedThroughout(r.legit);
});

test("a peer that sends 1 MB requests and never reads its answers grows the server by at most 32 MiB and is cut off; others keep getting answers", async () => {
  const r = await underAttack({ writeTimeoutMs: 1500 }, async (port) => [await flood(port, 150, bigEcho)]);
  assert.ok(r.grewMiB <= 32, `server RSS grew by ${r.grewMiB.toFixed(1)} MiB, bound 32 MiB`);
  assert.ok(r.allClosed, "the session of the peer that never reads was closed");
  assert.match(r.log, /"session_cut_off".*"reason":"write_timeout"/, "the log says why the session was cut off");
  assertServedThroughout(r.legit);
});

test("8 peers flooding 1 MB requests and PINGs at once grow the server by at most 64 MiB, and legitimate clients still get answers", async (t) => {
  const r = await underAttack({ writeTimeoutMs: 3000 }, (port) =>
    Promise.all(Array.from({ length: 8 }, (_, i) => flood(port, 150, i % 2 ? bigPing : bigEcho, `127.0.1.${i + 1}`))),
  );
  t.diagnostic(`server RSS grew by ${r.grewMiB.toFixed(1)} MiB`);
  // node20's budget: 64 MiB. Deno frees the same buffers later: 47.6, 52.4, 60.8, 64.7 and 64.3 MiB in five CI
  // runs of 2026-12-01 (docs/runtimes.md), against 38-53 on Node in the same runs; its bound is 80.
  const bound = detectRuntime().name === "deno" ? 80 : 64;
  assert.ok(r.grewMiB <= bound, `server RSS grew by ${r.grewMiB.toFixed(1)} MiB, bound ${bound} MiB`);
  assert.ok(r.allClosed, "every flooding session was closed");
  assertServedThroughout(r.legit);
});

test("a frame header alone does not make the server allocate the frame's body", async () => {
  const server = await testServer({ limits: { maxSessionsPerPeer: 1024, maxBufferedBytes: 256 * MiB } });
  const before = process.memoryUsage().arrayBuffers;
  const peers: SealedPeer[] = [];
  for (let i = 0; i < 100; i++) {
    const p = await sealedPeer(portOf(server));
    // A header announcing a 1 MiB request body, and 10 bytes of it.
    p.write(Buffer.concat([frame(FrameType.ChannelOpen, 1, 0, channelOpen()), frame(FrameType.Request, 1, 1, Buffer.alloc(10), 1024 * 1024)]));
    peers.push(p);
  }
  await waitFor(() => server.status().sessions === 100, "100 sessions");
  await sleep(200);
  const grew = (process.memoryUsage().arrayBuffers - before) / MiB;
  for (const p of peers) p.sock.destroy();
  assert.ok(grew < 16, `100 announced 1 MiB bodies held ${grew.toFixed(1)} MiB of buffers (bound 16 MiB)`);
});

test("past maxBufferedBytes the server refuses new sessions as busy, stops reading the sessions holding the most, and cuts off the stalled ones until it is under budget", async () => {
  const limit = 2 * MiB;
  const server = await testServer({ limits: { maxBufferedBytes: limit, writeTimeoutMs: 1500 } });
  const port = portOf(server);
  const good = await (await connect(server)).openChannel("good");
  // Peers that each send 900 KB of a 1 MiB request and stop: 1 MiB held for each in a partial frame.
  const hogs: SealedPeer[] = [];
  for (let i = 0; i < 4; i++) {
    const p = await sealedPeer(port, { read: false });
    p.write(Buffer.concat([frame(FrameType.ChannelOpen, 1, 0, channelOpen()), frame(FrameType.Request, 1, 1, Buffer.alloc(900_000), 1024 * 1024)]));
    hogs.push(p);
    await sleep(50);
  }
  await sleep(300);
  const held = server.status().bufferedBytes;
  assert.ok(held > limit && held <= limit + 1.2 * MiB, `over budget by at most one frame (${held} bytes held)`);
  await assert.rejects(ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000 }), ServerBusyError, "a new session is refused while over budget");
  assert.equal((await good.request("still here")).toString(), "still here", "an existing light session is still served");
  // A paused session reads nothing, so its peer cannot even be seen to go: a holder that stays
  // stalled for writeTimeoutMs is cut off, until the server is under budget again.
  await waitFor(() => server.status().bufferedBytes <= limit, "the server to be under budget again", 8000);
  assert.ok(server.status().counters.sessionsCutOff! >= 1, "stalled heavy holders were cut off");
  const fresh = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000 });
  assert.equal((await (await fresh.openChannel("x")).request("back")).toString(), "back", "new sessions are admitted again");
  fresh.destroy();
  for (const p of hogs) p.sock.destroy();
});

test("a handler that never settles and ignores its signal cannot stall other applications on the same session", async () => {
  const app: SessionApp = {
    request(payload) {
      if (Buffer.from(payload).toString() === "hang") return new Promise(() => {});
      return payload;
    },
  };
  const server = await testServer({ appObject: app, limits: { maxInflightPerSession: 4, requestTimeoutMs: 300 } });
  const session = await connect(server);
  const stuck = await session.openChannel("stuck");
  const other = await session.openChannel("other");
  const hung = Array.from({ length: 4 }, () => stuck.request("hang", { timeoutMs: 10_000 }).then(() => "answered", (err: unknown) => String(err)));
  const t0 = Date.now();
  const answer = await Promise.race([other.request("hello", { timeoutMs: 10_000 }), sleep(3000).then(() => "stalled")]);
  assert.equal(String(answer), "hello", "another application on the same session is answered");
  assert.ok(Date.now() - t0 < 3000);
  for (const outcome of await Promise.all(hung)) assert.match(outcome, /ran longer than requestTimeoutMs/);
  assert.equal(server.status().inflight, 0, "the timed-out requests' slots are free");
});

test("the server writes nothing after its own FIN: a PING after GOAWAY gets no reset", async () => {
  const server = await testServer();
  const peer = await sealedPeer(portOf(server), { allowHalfOpen: true });
  let peerError: Error | null = null;
  peer.sock.on("error", (err) => (peerError = err));
  const ended = new Promise<void>((r) => peer.sock.once("end", () => r()));
  void server.drain(3000);
  await ended; // GOAWAY, then the server's FIN
  peer.write(frame(FrameType.Ping, 0, 1, Buffer.from("late")));
  await sleep(300);
  peer.sock.end();
  await peer.closed;
  assert.equal(peerError, null, "the peer saw no reset");
});

test("at maxSessions a session that has done nothing for a second gives its slot to a new client; sessions that work keep theirs", async () => {
  const server = await testServer({ limits: { maxSessions: 3 } });
  const port = portOf(server);
  const worker = await (await connect(server)).openChannel("busy");
  const idle = [await sealedPeer(port), await rawPeer(port)]; // open, never opens a channel; and:
  idle[1]!.sock.write(hello().subarray(0, 10)); // stuck in its handshake
  await waitFor(() => server.status().sessions === 3, "three sessions");
  await assert.rejects(ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000 }), ServerBusyError, "a fresh idle session is not evicted");
  await sleep(1100);
  const a = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000 });
  const b = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000 });
  await Promise.all(idle.map((p) => p.closed));
  assert.equal((await worker.request("still mine")).toString(), "still mine", "the working session kept its slot");
  await (await a.openChannel("x")).request("1");
  await (await b.openChannel("x")).request("2");
  assert.equal(server.status().counters.sessionsEvicted, 2);
  await assert.rejects(ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000 }), ServerBusyError, "sessions that work are never evicted");
  a.destroy();
  b.destroy();
});

test("regression: 40 clients sending 1 MB requests at once all get answers under the default buffer budget (frames in progress are never held back)", async () => {
  const server = await testServer({ limits: { maxSessionsPerPeer: 64 } });
  const port = portOf(server);
  const body = Buffer.alloc(1_000_000, 3);
  const sessions = await Promise.all(Array.from({ length: 40 }, () => ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 5000 })));
  const answers = await Promise.allSettled(sessions.map(async (s) => (await s.openChannel("big")).request(body, { timeoutMs: 20_000 })));
  for (const s of sessions) s.destroy();
  const failed = answers.filter((a) => a.status === "rejected").map((a) => String((a as PromiseRejectedResult).reason));
  assert.deepEqual(failed, []);
  for (const a of answers) assert.equal((a as PromiseFulfilledResult<Buffer>).value.length, body.length);
  assert.equal(server.status().counters.sessionsCutOff, 0);
});

test("regression: peers that announce 1 MiB frames and send 64 KiB of each hold at most the budget, and new clients are still admitted", async () => {
  const server = await testServer();
  const port = portOf(server);
  const peers: SealedPeer[] = [];
  for (let i = 0; i < 96; i++) {
    const p = await sealedPeer(port, { read: false });
    p.write(Buffer.concat([frame(FrameType.ChannelOpen, 1, 0, channelOpen())]));
    peers.push(p);
  }
  await waitFor(() => server.status().sessions === 96, "96 sessions");
  const partial = frame(FrameType.Request, 1, 1, Buffer.alloc(64 * 1024 + 1), MiB);
  for (const p of peers) p.write(partial);
  await sleep(500);
  const held = server.status().bufferedBytes;
  const limit = server.limits.maxBufferedBytes;
  assert.ok(held <= limit + server.limits.maxFrameBytes, `held ${(held / MiB).toFixed(1)} MiB, budget ${limit / MiB} MiB + one frame`);
  const fresh = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000 });
  assert.equal((await (await fresh.openChannel("x")).request("in")).toString(), "in", "a new client is admitted and served");
  fresh.destroy();
  for (const p of peers) p.sock.destroy();
});

test("regression: a peer that never reads but keeps its unsent output under maxSessionOutputBytes is cut off after writeTimeoutMs", async () => {
  const server = await testServer({ limits: { writeTimeoutMs: 1000, idleTimeoutMs: 5000 } });
  const peer = await sealedPeer(portOf(server), { read: false, maxFrame: MiB });
  peer.write(Buffer.concat([frame(FrameType.ChannelOpen, 1, 0, channelOpen())]));
  const body = Buffer.alloc(900_000, 1);
  for (let i = 1; i <= 8; i++) peer.write(frame(FrameType.Request, 1, i, body)); // 7.2 MB of answers it never reads
  let alive = true;
  void peer.closed.then(() => (alive = false));
  const ping = frame(FrameType.Ping, 0, 0, Buffer.alloc(8));
  for (let i = 0; i < 6 && alive; i++, await sleep(1000)) peer.write(ping); // keeps the session busy
  assert.equal(alive, false, "cut off although it kept sending");
  assert.match(JSON.stringify(server.status().counters), /"sessionsCutOff":1/);
});

test("regression: a newcomer that another limit refuses evicts nobody's idle session", async () => {
  const server = await testServer({ limits: { maxSessions: 3, maxSessionsPerPeer: 2 } });
  const port = portOf(server);
  const other = await ClientSession.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.9" }); // idle, no channel
  const a = await ClientSession.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.8" });
  const b = await ClientSession.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.8" });
  await sleep(1100);
  await assert.rejects(ClientSession.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.8" }), ServerBusyError);
  assert.equal(server.status().counters.sessionsEvicted, 0, "nobody was evicted for a newcomer that was refused");
  assert.equal(server.status().sessions, 3);
  assert.equal((await (await other.openChannel("x")).request("kept")).toString(), "kept", "the idle session kept its slot");
  for (const s of [other, a, b]) s.destroy();
});

test("regression: a request the client cancels is answered at once and stops counting against maxInflight, even if its handler ignores the signal", async () => {
  const app: SessionApp = {
    request(payload) {
      const text = Buffer.from(payload).toString();
      if (text === "hang") return new Promise(() => {});
      if (text === "slow echo") return sleep(50).then(() => payload);
      return payload;
    },
  };
  const server = await testServer({ appObject: app, limits: { maxInflightPerSession: 2, requestTimeoutMs: 20_000 } });
  const ch = await (await connect(server)).openChannel("x");
  const hung = await Promise.allSettled([ch.request("hang", { timeoutMs: 200 }), ch.request("hang", { timeoutMs: 200 })]);
  assert.deepEqual(hung.map((h) => h.status), ["rejected", "rejected"]);
  const t0 = Date.now();
  const third = ch.request("hang", { timeoutMs: 10_000 }).catch(() => "failed");
  const echo = await Promise.race([ch.request("slow echo"), sleep(3000).then(() => null)]);
  assert.equal(String(echo), "slow echo", "a new request is read and answered although two abandoned handlers and a slow one run");
  assert.ok(Date.now() - t0 < 3000);
  assert.equal(server.status().inflight, 3, "the abandoned handlers still run, and are still counted by the server");
  void third;
});

test("a peer that opens sessions faster than sessionRatePerPeer is refused as busy (each handshake costs a signature); another peer is admitted", async () => {
  const server = await testServer({ limits: { sessionRatePerPeer: 5, sessionBurstPerPeer: 5, maxSessionsPerPeer: 100 } });
  const port = portOf(server);
  const t0 = performance.now();
  const results = await Promise.allSettled(
    Array.from({ length: 20 }, () => ClientSession.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.20", timeoutMs: 3000 })),
  );
  const elapsedS = (performance.now() - t0) / 1000;
  const admitted = results.filter((r) => r.status === "fulfilled").length;
  // The burst of 5, and at most what 5 tokens a second refilled while the 20 handshakes ran (a loaded machine runs them slower).
  const bound = 5 + Math.ceil(5 * elapsedS);
  assert.ok(admitted >= 5 && admitted <= bound, `admitted ${admitted}: the burst of 5 plus at most ${bound - 5} refilled in ${elapsedS.toFixed(2)} s`);
  assert.ok(admitted < 20, "the peer was held to its rate");
  for (const r of results) {
    if (r.status === "fulfilled") r.value.destroy();
    else assert.ok(r.reason instanceof ServerBusyError, String(r.reason));
  }
  const other = await ClientSession.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.21", timeoutMs: 3000 });
  other.destroy();
  assert.equal(server.status().counters.sessionsRefused, 20 - admitted, "every handshake past the budget was counted as refused");
});

test("regression: peers that trickle a byte now and then into large frames are cut off, and the budget they held serves others", async () => {
  const limit = 2 * MiB;
  const server = await testServer({ limits: { maxBufferedBytes: limit, writeTimeoutMs: 1000, maxSessionsPerPeer: 64 } });
  const port = portOf(server);
  const hogs: SealedPeer[] = [];
  for (let i = 0; i < 3; i++) {
    const p = await sealedPeer(port, { read: false });
    // 256 KiB + 1 of a 1 MiB request, then a byte every 300 ms: some progress, never enough.
    p.write(Buffer.concat([frame(FrameType.ChannelOpen, 1, 0, channelOpen()), frame(FrameType.Request, 1, 1, Buffer.alloc(256 * 1024 + 1), MiB)]));
    hogs.push(p);
  }
  let trickling = true;
  const trickle = (async () => {
    for (let i = 0; trickling && i < 100; i++, await sleep(300)) for (const p of hogs) if (!p.sock.destroyed) p.write(Buffer.alloc(1));
  })();
  await waitFor(() => server.status().counters.sessionsCutOff === 3, "the three tricklers to be cut off", 8000);
  trickling = false;
  await trickle;
  assert.equal(server.status().bufferedBytes, 0, "their memory is back");
  assert.match(JSON.stringify(server.status().counters), /"sessionsCutOff":3/);
  const fresh = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000 });
  const answer = await (await fresh.openChannel("big")).request(Buffer.alloc(300_000, 7), { timeoutMs: 5000 });
  assert.equal(answer.length, 300_000);
  fresh.destroy();
  for (const p of hogs) p.sock.destroy();
});

test("regression: REQUEST and CANCEL pairs cannot start more than twice maxInflightPerSession handlers", async () => {
  let started = 0;
  const app: SessionApp = {
    request() {
      started++;
      return new Promise(() => {});
    },
  };
  const server = await testServer({ appObject: app, limits: { maxInflightPerSession: 4, requestTimeoutMs: 60_000 } });
  const peer = await sealedPeer(portOf(server));
  const frames = [frame(FrameType.ChannelOpen, 1, 0, channelOpen())];
  for (let s = 1; s <= 2000; s++) frames.push(frame(FrameType.Request, 1, s, Buffer.from("x")), frame(FrameType.Cancel, 1, s, Buffer.alloc(0)));
  peer.write(Buffer.concat(frames));
  await sleep(500);
  assert.ok(started <= 2 * 4 + 1, `${started} handlers started for 2000 cancelled requests (bound 2 x maxInflightPerSession)`);
  assert.ok(server.status().inflight <= 9);
  peer.sock.destroy();
});

test("regression: a peer whose handlers all outlive requestTimeoutMs costs at most a log line a second", async () => {
  const lines: string[] = [];
  const app: SessionApp = { request: () => new Promise(() => {}) };
  const server = await testServer({
    appObject: app,
    logger: createLogger("info", (l) => lines.push(l)),
    limits: { maxInflightPerSession: 256, requestTimeoutMs: 100 },
  });
  const ch = await (await connect(server)).openChannel("x");
  const all = Array.from({ length: 200 }, () => ch.request("x", { timeoutMs: 5000 }).catch(() => "timed out"));
  await Promise.all(all);
  const timeouts = lines.filter((l) => l.includes('"request_timeout"')).length;
  assert.ok(timeouts <= 2, `${timeouts} request_timeout lines for 200 expired handlers`);
  assert.equal(server.status().counters.requestTimeouts, 200);
});

test("regression: half-sent frames that the budget paused do not lock new clients out: new clients are admitted within 2 × writeTimeoutMs", async () => {
  const server = await testServer({ limits: { maxBufferedBytes: MiB, writeTimeoutMs: 1000, maxSessionsPerPeer: 64, idleTimeoutMs: 120_000 } });
  const port = portOf(server);
  // 40 sessions from one address begin a 1 MiB request each, with one byte of it...
  const hogs: SealedPeer[] = [];
  for (let i = 0; i < 40; i++) {
    const p = await sealedPeer(port, { read: false });
    p.write(Buffer.concat([frame(FrameType.ChannelOpen, 1, 0, channelOpen()), frame(FrameType.Request, 1, 1, Buffer.alloc(1), MiB)]));
    hogs.push(p);
  }
  await sleep(100);
  assert.equal(server.status().sessions, 40);
  // ...then 64 KiB more each, at once: the budget holds 16 of them; the rest are paused mid-frame.
  for (const p of hogs) p.write(Buffer.alloc(64 * 1024));
  await sleep(200);
  const t0 = Date.now();
  let admitted = false;
  while (!admitted && Date.now() - t0 < 2500) {
    const s = await ClientSession.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.77", timeoutMs: 1000 }).catch(() => null);
    if (s) {
      admitted = (await (await s.openChannel("x")).request("hi", { timeoutMs: 2000 })).toString() === "hi";
      s.destroy();
    } else await sleep(100);
  }
  assert.ok(admitted, `a new client was admitted within ${Date.now() - t0} ms (bound 2 × writeTimeoutMs = 2000 ms, with 500 ms of slack)`);
  await waitFor(() => server.status().bufferedBytes < MiB / 2, "the half-sent frames' memory to come back", 5000);
  for (const p of hogs) p.sock.destroy();
});

test("regression: async one-way message handlers count against maxInflightPerSession: a flood to a slow handler is read no faster than handlers finish", async () => {
  let running = 0;
  let most = 0;
  let done = 0;
  const app: SessionApp = {
    request: (p) => p,
    async message(payload) {
      running++;
      most = Math.max(most, running);
      await sleep(40);
      void payload.byteLength; // kept across the await
      running--;
      done++;
    },
  };
  const server = await testServer({ appObject: app, limits: { maxInflightPerSession: 8 } });
  const s = await connect(server);
  const ch = await s.openChannel("sensor");
  for (let i = 0; i < 400; i++) ch.send(Buffer.alloc(512, i & 255));
  await waitFor(() => done === 400, "every message to be handled", 20_000);
  assert.ok(most <= 8 + 1, `${most} message handlers ran at once (bound maxInflightPerSession = 8)`);
  assert.equal((await ch.request("still answers")).toString(), "still answers");
  assert.equal(server.status().bufferedBytes, 0, "nothing is held once they finished");
  s.destroy();
});

test("at maxSessions quiet sessions with open channels give their slots too: the busiest peer's first, then the longest quiet; one running a request keeps its slot", async () => {
  const app: SessionApp = { request: async (p) => (Buffer.from(p).toString() === "slow" ? (await sleep(4000), p) : p) };
  const server = await testServer({ appObject: app, limits: { maxSessions: 3, maxSessionsPerPeer: 3 } });
  const port = portOf(server);
  const open = (localAddress: string) => ClientSession.connect({ host: "127.0.0.1", port, localAddress, timeoutMs: 3000 });
  const a = await open("127.0.0.51");
  const b = await open("127.0.0.52");
  const c = await open("127.0.0.52");
  const chA = await a.openChannel("x");
  const chB = await b.openChannel("x");
  const chC = await c.openChannel("x");
  await sleep(300);
  await chB.request("b"); // B is quiet for less long than A, but its peer holds two sessions
  const slow = chC.request("slow", { timeoutMs: 10_000 });
  await sleep(1200);
  const d = await open("127.0.0.53");
  await waitFor(() => b.draining, "B (the busiest peer's quiet session) to be told to go");
  assert.equal(a.draining, false);
  const e = await open("127.0.0.54");
  await waitFor(() => a.draining, "then A");
  await assert.rejects(open("127.0.0.55"), ServerBusyError, "C runs a request; D and E are new: nobody else gives way");
  assert.equal((await slow).toString(), "slow", "C kept its slot and finished");
  assert.equal(server.status().counters.sessionsEvicted, 2);
  void chA;
  for (const s of [a, b, c, d, e]) s.destroy();
});
