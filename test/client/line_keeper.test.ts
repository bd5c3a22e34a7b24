/**
 * Line measures and the switch policy on loopback, with the OS seam
 * (LineSystem) replaced so two loopback addresses can have lines of
 * different speeds.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { probeHops } from "../../src/client/line/hop_probe.ts";
import { measureLine } from "../../src/client/line/line_measure.ts";
import type { LineSystem } from "../../src/client/line/line_system.ts";
import { portOf, sleep, testServer, waitFor } from "../helpers/fixtures.ts";

/** 127.0.0.2 is on a 1000 Mb/s line, 127.0.0.1 on a 100 Mb/s one, shaped to 40 when `shaped`. */
function fakeSystem(shaped = false): LineSystem {
  return {
    route: async (a) => ({ dev: a === "127.0.0.2" ? "fast0" : "slow0", gateway: null, pmtu: a === "127.0.0.2" ? null : 1400 }),
    linkSpeedMbps: async (dev) => (dev === "fast0" ? 1000 : 100),
    linkMtu: async () => 1500,
    shaperRateMbps: async (dev) => (shaped && dev === "slow0" ? 40 : null),
  };
}

test("TTL-limited probes to the server's identify responder count 0 routers on loopback with 1 + log2(maxHops) probes, and time the round trip", async () => {
  const server = await testServer();
  const before = server.stats.probes;
  const r = await probeHops("127.0.0.1", portOf(server), { maxHops: 8, timeoutMs: 1000, serverId: server.serverId });
  assert.equal(r.routers, 0);
  assert.equal(r.probesSent, 4, "the full-TTL probe, then TTL 4, 2, 1");
  assert.equal(server.stats.probes - before, 4, "the server signed 4 answers");
  assert.ok(r.rttMs !== null && r.rttMs >= 0 && r.rttMs < 1000);
});

test("a probe answered by another server than the one expected does not count: the line is unreachable", async () => {
  const server = await testServer();
  const r = await probeHops("127.0.0.1", portOf(server), { maxHops: 2, timeoutMs: 300, serverId: "00000000-0000-4000-8000-000000000000" });
  assert.equal(r.routers, null);
});

test("a line measure takes the lower of link speed and shaper rate, and the lower of learned PMTU and link MTU", async () => {
  const server = await testServer();
  const m = await measureLine("127.0.0.1", portOf(server), { system: fakeSystem(true), maxHops: 2, timeoutMs: 1000 });
  assert.equal(m.bandwidthMbps, 40);
  assert.equal(m.pathMtu, 1400);
  assert.equal(m.routers, 0);
  assert.ok(m.reachable);
});

test("a line that scores better by less than lineSwitchMargin does not move the session (hysteresis); by more, it does", async () => {
  const server = await testServer({ listen: ["127.0.0.1:0", "127.0.0.2:0"] });
  const [slow, fast] = server.endpoints();
  assert.ok(slow && fast);
  // Bandwidth only: 100 Mb/s scores 50, 1000 Mb/s 75.
  for (const [margin, moves] of [
    [30, false],
    [20, true],
  ] as const) {
    const c = createClient({ lingerMs: 0, linePreference: { bandwidth: 1 }, lineSwitchMargin: margin, lineSystem: fakeSystem() });
    try {
      await c.connect({ host: slow.address, port: slow.port, app: "a" });
      await c.connect({ host: fast.address, port: fast.port, app: "b" });
      assert.equal(c.lineStats.measures, 0, "the connect that rode the session did not wait for a line measure");
      await waitFor(() => c.lineStats.measures >= 2, "both lines measured", 3000);
      await sleep(200);
      const row = c.sessions()[0]!;
      assert.equal(row.communicationAddress, moves ? fast.address : slow.address, `margin ${margin}`);
      assert.equal(row.line?.score, moves ? 75 : 50);
      assert.equal(c.lineStats.switches, moves ? 1 : 0);
    } finally {
      await c.close();
    }
  }
});

test("a server with one known address costs no line probe", async () => {
  const server = await testServer();
  const c = createClient({ lingerMs: 0 });
  try {
    const l = await c.connect({ host: "127.0.0.1", port: portOf(server), app: "a" });
    await l.request("x");
    await sleep(100);
    assert.equal(c.lineStats.probesSent, 0);
    assert.equal(server.status().counters.probes, 1, "the identify probe only");
    assert.equal(c.sessions()[0]!.line, null);
  } finally {
    await c.close();
  }
});

test("bad line options are RangeErrors or TypeErrors; millisecond options out of range are PERILINK_CONFIG", () => {
  const config = (name: string) => (err: unknown) => (err as { code?: string }).code === "PERILINK_CONFIG" && (err as Error).message.includes(name);
  assert.throws(() => createClient({ lineSwitchMargin: -1 }), RangeError);
  assert.throws(() => createClient({ lineRefreshMs: -5 }), config("lineRefreshMs"));
  assert.throws(() => createClient({ linePreference: { hops: -1 } }), RangeError);
  assert.throws(() => createClient({ linePreference: { colour: 1 } as never }), TypeError);
  assert.throws(() => createClient({ pingTimeoutMs: -1 }), config("pingTimeoutMs"));
  assert.throws(() => createClient({ silenceMs: 0 }), config("silenceMs"));
  // Past 2^31−1 ms a timer fires after 1 ms: each of these would act at once instead of never.
  for (const name of ["waitTimeoutMs", "lingerMs", "probeTimeoutMs", "requestTimeoutMs", "silenceMs", "pingTimeoutMs", "lineRefreshMs"]) {
    assert.throws(() => createClient({ [name]: 3e9 }), config(name), name);
  }
  assert.throws(() => createClient({ resolution: { gatherMs: 3e9 } }), config("resolution.gatherMs"));
  // An age compared with, not a timer: any length is fine (the identity is kept that long).
  void createClient({ identityTtlMs: 40 * 86_400_000, stateDir: false }).close();
});

test("a server with 40 addresses is measured at most 4 lines at a time, and each interface's facts are read once, not once per address", async () => {
  const { LineKeeper, MEASURES_AT_ONCE } = await import("../../src/client/line/line_keeper.ts");
  const { normalizePreference } = await import("../../src/client/line/line_score.ts");
  const { silentLogger } = await import("../../src/logger.ts");
  let routesNow = 0;
  let mostRoutes = 0;
  const reads = { speed: 0, mtu: 0, shaper: 0 };
  const system: LineSystem = {
    route: async (a) => {
      mostRoutes = Math.max(mostRoutes, ++routesNow);
      await sleep(5);
      routesNow--;
      return { dev: Number(a.split(".")[3]) % 2 ? "eth0" : "wlan0", gateway: null, pmtu: null };
    },
    linkSpeedMbps: async () => (reads.speed++, 100),
    linkMtu: async () => (reads.mtu++, 1500),
    shaperRateMbps: async () => (reads.shaper++, null),
  };
  const addresses = Array.from({ length: 40 }, (_, i) => ({ host: `127.0.3.${i + 1}`, port: 9 })); // nothing answers: each measure waits out its probes
  const entry = { serverId: "00000000-0000-4000-8000-000000000000", addresses, links: { size: 1 }, active: { address: addresses[0]! }, moveTo: async () => false };
  const keeper = new LineKeeper(
    { preference: normalizePreference(undefined), refreshMs: 30_000, switchMargin: 5, maxHops: 2, probeTimeoutMs: 60, maxAddresses: 4096, system, log: silentLogger },
    () => [entry],
  );
  try {
    keeper.review(entry);
    await keeper.refresh();
    assert.equal(keeper.stats.measures, 40);
    assert.ok(keeper.stats.mostAtOnce <= MEASURES_AT_ONCE && MEASURES_AT_ONCE === 4, `at most 4 measures at once: ${keeper.stats.mostAtOnce}`);
    assert.ok(mostRoutes <= 4, `route lookups at once: ${mostRoutes}`);
    assert.deepEqual(reads, { speed: 2, mtu: 2, shaper: 2 }, "one read of each fact per interface (eth0, wlan0)");
  } finally {
    await keeper.close();
  }
});
