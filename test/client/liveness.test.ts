import assert from "node:assert/strict";
import { test } from "node:test";
import { Liveness, type LivenessHost } from "../../src/client/line/liveness.ts";
import { sleep } from "../helpers/fixtures.ts";

/** A session stand-in: counts PINGs, can answer them (a read) or not. */
function fakeHost(): LivenessHost & { pings: number; deadAfter: number | null; answer: boolean; busy: number; lastReadAt: number } {
  const h = {
    pings: 0,
    deadAfter: null as number | null,
    answer: true,
    busy: 0,
    lastReadAt: performance.now(),
    lastRead: () => h.lastReadAt,
    outstanding: () => h.busy,
    ping: () => {
      h.pings++;
      if (h.answer) setTimeout(() => (h.lastReadAt = performance.now()), 5);
    },
    dead: (ms: number) => {
      h.deadAfter = ms;
    },
  };
  return h;
}

test("an idle session is pinged only at the keepalive interval, never at the silence interval", async () => {
  const h = fakeHost();
  const w = new Liveness(h, { silenceMs: 20, pingTimeoutMs: 50, keepaliveMs: 200 });
  await sleep(300);
  w.stop();
  assert.equal(h.pings, 1, "one keepalive PING in 300 ms with a 200 ms interval");
  assert.equal(h.deadAfter, null);
});

test("a busy session that reads nothing sends a PING after silenceMs and is dead when nothing answers within pingTimeoutMs", async () => {
  const h = fakeHost();
  h.answer = false;
  const w = new Liveness(h, { silenceMs: 40, pingTimeoutMs: 80, keepaliveMs: 10_000 });
  const start = performance.now();
  h.busy = 1;
  w.busy();
  while (h.deadAfter === null && performance.now() - start < 2000) await sleep(5);
  const took = performance.now() - start;
  w.stop();
  assert.equal(h.pings, 1);
  assert.ok(h.deadAfter !== null, "declared dead");
  assert.ok(took >= 40 + 80 - 5 && took < 40 + 20 + 80 + 200, `dead after silence + deadline (${took.toFixed(0)} ms)`);
});

test("a busy session whose PINGs are answered stays alive", async () => {
  const h = fakeHost();
  const w = new Liveness(h, { silenceMs: 30, pingTimeoutMs: 60, keepaliveMs: 10_000 });
  h.busy = 1;
  w.busy();
  await sleep(400);
  w.stop();
  assert.equal(h.deadAfter, null);
  assert.ok(h.pings >= 3, `PINGs while silent (${h.pings})`);
});

test("a request past its deadline sends a PING at once; pingTimeoutMs 0 never declares a line dead", async () => {
  const h = fakeHost();
  h.answer = false;
  const w = new Liveness(h, { silenceMs: 10_000, pingTimeoutMs: 50, keepaliveMs: 10_000 });
  w.timedOut();
  assert.equal(h.pings, 1);
  await sleep(120);
  assert.ok(h.deadAfter !== null);
  w.stop();
  const h2 = fakeHost();
  h2.answer = false;
  const off = new Liveness(h2, { silenceMs: 10, pingTimeoutMs: 0, keepaliveMs: 30 });
  h2.busy = 1;
  off.busy();
  off.timedOut();
  await sleep(150);
  off.stop();
  assert.equal(h2.deadAfter, null);
  assert.ok(h2.pings <= 6, `only keepalive PINGs (${h2.pings})`);
});

test("a PONG carrying the PING's send time gives the round-trip time", () => {
  const h = fakeHost();
  const w = new Liveness(h, { silenceMs: 100, pingTimeoutMs: 100, keepaliveMs: 10_000 });
  const b = Buffer.alloc(8);
  b.writeDoubleBE(performance.now() - 12, 0);
  w.pong(b);
  w.stop();
  assert.ok(w.rttMs !== null && w.rttMs >= 12 && w.rttMs < 100);
});

test("regression: an idle session keeps its keepalive rhythm when pingTimeoutMs is longer than the keepalive interval", async () => {
  // The server closes a session idle for idleTimeoutMs; the client pings every third of it. A check
  // put off to the PING's deadline (1 s here) let a 1 s idle timeout close a healthy session.
  const h = fakeHost();
  const w = new Liveness(h, { silenceMs: 500, pingTimeoutMs: 1000, keepaliveMs: 100 });
  await sleep(560);
  w.stop();
  assert.ok(h.pings >= 4, `${h.pings} PINGs in 560 ms with a 100 ms keepalive interval`);
  assert.equal(h.deadAfter, null);
});
