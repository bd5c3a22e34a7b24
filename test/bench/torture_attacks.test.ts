import assert from "node:assert/strict";
import { test } from "node:test";
import type { AttackTarget, Counters } from "../../bench/lib/torture/attack.ts";
import { ATTACKS } from "../../bench/lib/torture/attacks/index.ts";
import type { PerilinkServer } from "../../src/server/server.ts";
import { portOf, sleep, testServer } from "../helpers/fixtures.ts";
import { tcpConnectionsTo } from "../helpers/os_sockets.ts";

/**
 * The torture benchmark's attacks are load loops on a shared machine: each
 * must end by itself at its deadline, leave no socket behind, and do what
 * its counters say. Small sizes and a 700 ms deadline keep this quick.
 */

const LIMITS = { maxSessions: 8, maxSessionsPerPeer: 2, maxFrameBytes: 4096, handshakeTimeoutMs: 400, maxBufferedBytes: 65536 };
const SMALL = { randomWorkers: 2, pingConnections: 2, lorisConnections: 4, lorisIntervalMs: 50, probeSources: 20, probesPerSecond: 200, handshakesPerSecond: 200, holdMinMs: 20, holdMaxMs: 100 };

/** Runs attack `kind` against a fresh server until its deadline; returns its counters and the sockets still open to the server just before stop(). */
async function runUntilDeadline(kind: string, runMs = 700): Promise<{ counters: Counters; leftOpen: number; stopMs: number; server: PerilinkServer }> {
  const server = await testServer({ limits: LIMITS });
  const port = portOf(server);
  const target: AttackTarget = { host: "127.0.0.1", port, ...LIMITS, stateDir: server.config.stateDir };
  const attack = ATTACKS[kind]!.start(target, { ...SMALL, deadline: Date.now() + runMs });
  await attack.ready;
  await sleep(runMs + 1000);
  const leftOpen = tcpConnectionsTo([port]) ?? 0;
  const t0 = performance.now();
  const counters = await attack.stop();
  return { counters, leftOpen, stopMs: performance.now() - t0, server };
}

test("random-byte peers stop by themselves at the deadline and leave no socket open", async () => {
  const { counters, leftOpen, stopMs } = await runUntilDeadline("random-bytes");
  assert.ok(counters.connections! > 2, `connections ${counters.connections}`);
  assert.ok(counters.afterHello! > 0, "half of them send a valid hello first");
  assert.equal(leftOpen, 0);
  assert.ok(stopMs < 1000, `stop() took ${stopMs} ms`);
});

test("the PING flood completes the handshake, writes maxFrame PINGs, stops at the deadline and leaves no socket open", async () => {
  const { counters, leftOpen, stopMs } = await runUntilDeadline("ping-flood");
  assert.ok(counters.sessions! >= 2, `sessions ${counters.sessions}`);
  assert.equal(counters.maxFrame, LIMITS.maxFrameBytes, "the PING payload is the server's maxFrame");
  assert.ok(counters.frames! > 10, `frames ${counters.frames}`);
  assert.equal(leftOpen, 0);
  assert.ok(stopMs < 1000, `stop() took ${stopMs} ms`);
});

test("slow-loris connections are cut by the handshake timeout, stop at the deadline and leave no socket open", async () => {
  const { counters, leftOpen } = await runUntilDeadline("slow-loris");
  // 32 bytes at one per 50 ms take 1.6 s: a 400 ms handshake timeout cuts every connection first.
  assert.ok(counters.cutByServer! >= 4, `cut ${counters.cutByServer}`);
  assert.equal(counters.helloCompleted, 0);
  assert.ok(counters.cutMsMax! < 1200, `longest ${counters.cutMsMax} ms`);
  assert.equal(leftOpen, 0);
});

test("the handshake flood asks for more sessions than the limits allow, gets ServerBusy, stops at the deadline and leaves no socket open", async () => {
  const { counters, leftOpen } = await runUntilDeadline("handshake-flood");
  // One address with 2 x maxSessionsPerPeer workers, and ceil(1.25 x 8 / 2) = 5 more addresses.
  assert.equal(counters.sources, 6);
  assert.equal(counters.workers, 4 + 5 * 2);
  assert.ok(counters.accepted! > 0 && counters.busy! > 0, `accepted ${counters.accepted}, busy ${counters.busy}`);
  assert.ok(counters.openPeak! <= LIMITS.maxSessions, `open at once ${counters.openPeak}`);
  assert.equal(leftOpen, 0);
});

test("the probe flood sends from distinct loopback sources, gets signed answers, and stops sending at the deadline", async () => {
  const { counters } = await runUntilDeadline("probe-flood");
  assert.equal(counters.sources, SMALL.probeSources);
  assert.ok(counters.sent! > 50 && counters.sent! <= 200, `sent ${counters.sent} in 0.7 s at 200/s`);
  assert.ok(counters.answered! > 0 && counters.answered! <= counters.sent!, `answered ${counters.answered}`);
});

test("the async-message flood opens trusted sessions with a channel, writes MESSAGE frames, stops at the deadline and leaves no socket open", async () => {
  const { counters, leftOpen, stopMs } = await runUntilDeadline("async-messages");
  assert.ok(counters.sessions! >= 1, `sessions ${counters.sessions}`);
  assert.ok(counters.messages! > 16, `messages ${counters.messages}`);
  assert.equal(counters.refused, 0, "the state directory's key is trusted");
  assert.equal(leftOpen, 0);
  assert.ok(stopMs < 1000, `stop() took ${stopMs} ms`);
});

test("half-sent frames: sessions send half of a maxFrame PING and hold it, stop at the deadline and leave no socket open", async () => {
  const { counters, leftOpen } = await runUntilDeadline("half-frames");
  // min(ceil(1.25 x 65536 / 2048), 8 / 2) = 4 sessions, 2 to an address.
  assert.ok(counters.halfFrames! >= 4, `half frames ${counters.halfFrames}`);
  assert.equal(counters.addresses, 2);
  assert.equal(leftOpen, 0);
});

test("channel holders take every slot with trusted sessions holding a channel, from maxSessions / 2 addresses, and leave no socket open", async () => {
  const { counters, leftOpen, server } = await runUntilDeadline("channel-holders");
  assert.equal(counters.addresses, 4);
  assert.ok(counters.sessions! >= 8, `sessions ${counters.sessions}`);
  assert.ok(server.status().counters.sessionsAccepted! >= 8, `the server accepted them: ${server.status().counters.sessionsAccepted}`);
  assert.equal(leftOpen, 0);
});

test("the poisoned name: a recorded name that now leads to a rogue server is refused, the device is reached when listed, and the rogue gets nothing", async () => {
  // Each round is a fresh client connecting by name: 3 s leaves room for two on a slow machine (700 ms gave one).
  const { counters, leftOpen } = await runUntilDeadline("poisoned-name", 3000);
  assert.ok(counters.rounds! >= 2, `rounds ${counters.rounds}`);
  assert.ok(counters.refusedChanged! >= 1, `refused as changed: ${counters.refusedChanged}`);
  assert.ok(counters.okViaDevice! >= 1, `reached the device: ${counters.okViaDevice}`);
  assert.equal(counters.answeredByRogue, 0);
  assert.equal(counters.rogueChannels, 0);
  assert.equal(leftOpen, 0);
});
