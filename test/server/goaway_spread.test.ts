import assert from "node:assert/strict";
import { test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { portOf, testServer } from "../helpers/fixtures.ts";

/** The times (ms after the drain began) at which each of `n` sessions heard GOAWAY. */
async function goAwayTimes(n: number, goAwaySpreadMs: number, drainMs = 10_000): Promise<number[]> {
  const server = await testServer({ limits: { goAwaySpreadMs, maxSessionsPerPeer: 64, sessionRatePerPeer: 0 } });
  const sessions = await Promise.all(Array.from({ length: n }, () => ClientSession.connect({ host: "127.0.0.1", port: portOf(server) })));
  const t0 = performance.now();
  const heard = sessions.map((s) => new Promise<number>((resolve) => s.once("goaway", () => resolve(performance.now() - t0))));
  const drained = server.drain(drainMs);
  const times = await Promise.all(heard);
  for (const s of sessions) void s.close();
  await drained;
  return times.sort((a, b) => a - b);
}

test("a drain spreads GOAWAY over goAwaySpreadMs: 40 sessions hear it across the window, not in one burst", async () => {
  const times = await goAwayTimes(40, 800);
  const span = times.at(-1)! - times[0]!;
  assert.ok(span >= 600 && span < 1500, `GOAWAYs spread over ${span.toFixed(0)} ms`);
  // Evenly: about a quarter of them in each quarter of the window.
  const firstQuarter = times.filter((t) => t < times[0]! + 200).length;
  assert.ok(firstQuarter >= 6 && firstQuarter <= 16, `${firstQuarter} of 40 in the first 200 ms`);
});

test("goAwaySpreadMs 0, or a few sessions, or a short drain deadline: GOAWAY goes to every session at once", async () => {
  for (const [n, spread, drainMs] of [[40, 0, 10_000], [8, 800, 10_000], [40, 800, 400]] as const) {
    const times = await goAwayTimes(n, spread, drainMs);
    const span = times.at(-1)! - times[0]!;
    const limit = drainMs / 4 + 150;
    assert.ok(span < (spread === 0 || n <= 8 ? 150 : limit), `${n} sessions, spread ${spread}, drain ${drainMs}: span ${span.toFixed(0)} ms`);
  }
});
