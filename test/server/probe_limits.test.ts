/**
 * Probe signing limits (S1) seen from the attacker's side: many source
 * addresses at once. Every client socket is bound to its own address in
 * 127.0.0.0/8 (Linux routes the whole block to lo), so the server sees that
 * many distinct sources. Every loop is bounded in count and in time.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { after, test } from "node:test";
import { encodeProbeRequest } from "../../src/protocol/probe.ts";
import type { PerilinkServer } from "../../src/server/server.ts";
import { portOf, sleep, testServer } from "../helpers/fixtures.ts";

/** The i-th source address, in a block of 127/8 no other test uses. */
function sourceAddress(i: number): string {
  return `127.66.${Math.floor(i / 200)}.${1 + (i % 200)}`;
}

interface Sources {
  sockets: dgram.Socket[];
  replies(): number;
  close(): void;
}

/** Binds `count` UDP sockets, one per source address; closed after the file. */
async function openSources(count: number): Promise<Sources> {
  const sockets: dgram.Socket[] = [];
  let replies = 0;
  const onMessage = (): void => {
    replies++;
  };
  for (let i = 0; i < count; i++) {
    const s = dgram.createSocket("udp4");
    s.on("message", onMessage);
    s.on("error", () => {});
    sockets.push(s);
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.bind(0, sourceAddress(i), () => {
        s.off("error", reject);
        resolve();
      });
    });
  }
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    for (const s of sockets) s.close();
  };
  after(close);
  return { sockets, replies: () => replies, close };
}

/** Probes sent before the sender waits for the server to judge them. */
const BATCH = 100;

interface Flood {
  sent: number;
  elapsedMs: number;
  signed: number;
}

/**
 * Each source sends one probe per round, for at most `rounds` rounds and at
 * most `durationMs`; then waits for the server to drain its socket. `elapsedMs`
 * runs from the first datagram to the moment the server's count is read.
 */
async function flood(server: PerilinkServer, sources: Sources, rounds: number, durationMs: number): Promise<Flood> {
  const port = portOf(server);
  const probe = encodeProbeRequest(randomBytes(16));
  const before = server.stats.probes;
  const start = performance.now();
  let sent = 0;
  const droppedBefore = server.stats.probesDropped;
  const seen = (): number => server.stats.probes + server.stats.probesDropped - before - droppedBefore;
  for (let r = 0; r < rounds && performance.now() - start < durationMs; r++) {
    for (let i = 0; i < sources.sockets.length && performance.now() - start < durationMs; i += BATCH) {
      for (const s of sources.sockets.slice(i, i + BATCH)) {
        s.send(probe, port, "127.0.0.1");
        sent++;
      }
      // Pace the sender to the server (same process) so that the kernel's
      // receive queue does not overflow: every probe should be judged.
      const waitUntil = performance.now() + 200;
      while (seen() < sent && performance.now() < waitUntil) await sleep(1);
    }
  }
  await sleep(100);
  return { sent, elapsedMs: performance.now() - start, signed: server.stats.probes - before };
}

test("probes from 2,000 source addresses for 2 s are signed no faster than the global bucket allows", async () => {
  const server = await testServer({ probe: { globalRatePerSecond: 100, globalBurst: 100 } });
  const sources = await openSources(2000);
  const f = await flood(server, sources, 1000, 2000);
  const bound = 100 + (100 * f.elapsedMs) / 1000;
  console.log(
    `sent ${f.sent} probes from 2000 sources in ${Math.round(f.elapsedMs)} ms: ${f.signed} signed, ${sources.replies()} answers received (bound ${Math.floor(bound)})`,
  );
  assert.ok(f.signed >= 100, `the global burst is served (${f.signed} signed)`);
  assert.ok(f.signed <= bound, `${f.signed} signatures in ${Math.round(f.elapsedMs)} ms exceed the global budget of ${Math.floor(bound)}`);
  assert.ok(sources.replies() <= f.signed);
  sources.close();
});

test("cycling through more sources than trackedSources mints no tokens: answers stay within the table's bursts and refill", async () => {
  const tracked = 500;
  const burst = 5;
  const rate = 1;
  const server = await testServer({
    probe: { ratePerSecond: rate, burst, trackedSources: tracked, globalRatePerSecond: 1_000_000, globalBurst: 1_000_000 },
  });
  const sources = await openSources(2000);
  const f = await flood(server, sources, 6, 3000);
  // What `tracked` sources that were never evicted could have taken at most.
  const bound = tracked * burst + (tracked * rate * f.elapsedMs) / 1000;
  console.log(`sent ${f.sent} probes cycling 2000 sources over a table of ${tracked} in ${Math.round(f.elapsedMs)} ms: ${f.signed} signed (bound ${Math.floor(bound)})`);
  assert.ok(f.signed >= tracked, `each source's first probe within the table's room is answered (${f.signed} signed)`);
  assert.ok(f.signed <= bound, `${f.signed} signatures exceed what ${tracked} tracked sources could take (${Math.floor(bound)})`);
  sources.close();
});
