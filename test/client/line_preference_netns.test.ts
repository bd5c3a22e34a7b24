/**
 * C8 in the two-line topology (test/helpers/netns_topology.ts): the direct
 * line (no router, MTU 1500) and the routed one (one router, MTU 1400,
 * shaped in the router). The session runs on the line that scores best as
 * the user weighs it, and moves make-before-break — no request fails — when
 * a better line appears or comes back. Needs root and ip netns; skips otherwise.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient, LINE_MAX_HOPS, type PerilinkClient } from "../../src/client/client.ts";
import { measureLine } from "../../src/client/line/line_measure.ts";
import { linuxLineSystem } from "../../src/client/line/line_system.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { runCli } from "../helpers/cli.ts";
import { describeFailures, pacedRequests } from "../helpers/paced_requests.ts";
import { twoLinesPerFile } from "../helpers/two_lines.ts";
import { sleep, tempDir, waitFor } from "../helpers/fixtures.ts";

const lines = twoLinesPerFile();

const onAddress = (c: PerilinkClient): (string | null)[] => [...new Set(c.sessions().map((r) => r.communicationAddress))];
/** Whether the client's session rides `line` — over its IPv4 or its IPv6 address (the server announces both, §5.4). */
const onLine = (c: PerilinkClient, line: { server: { v4: string; v6: string } }): boolean => {
  const at = onAddress(c)[0];
  return at === line.server.v4 || at === line.server.v6;
};

test("with the default preference the session moves to the direct line though the routed address was named first, and no request fails on the way", async (t) => {
  const { topo, server } = lines;
  if (!topo || !server) return t.skip(lines.skip);
  const { direct, routed } = topo;
  const client = createClient({ lingerMs: 0 });
  try {
    const a = await client.connect({ host: routed.server.v4, port: server.port, app: "a" });
    assert.deepEqual(onAddress(client), [routed.server.v4], "the first session is on the only address known");
    const moves: { reason: string; to: { address: string } }[] = [];
    a.on("moved", (m: { reason: string; to: { address: string } }) => moves.push(m));
    const run = pacedRequests(a, { everyMs: 20, maxMs: 4000, idempotent: false });
    await sleep(300);
    await client.connect({ host: direct.server.v4, port: server.port, app: "b" });
    await waitFor(() => onLine(client, direct), "the session to move to the direct line", 5000);
    await waitFor(() => moves.length > 0, "the link's moved event", 2000);
    assert.equal(moves[0]!.reason, "line", "the application is told: a better line");
    assert.ok([direct.server.v4, direct.server.v6].includes(moves[0]!.to.address));
    const records = await run.stop(3000);
    const row = client.sessions()[0]!;
    t.diagnostic(`line ${JSON.stringify(row.line)}; ${records.length} requests; measures ${JSON.stringify(client.lineStats)}`);
    assert.deepEqual(describeFailures(records), [], "no request fails while the links move");
    assert.equal(row.line?.routers, 0);
    assert.equal(row.line?.pathMtu, 1500);
    assert.ok(row.line?.score !== null && row.line!.score > 0);
    await waitFor(() => client.socketsInUse === 1, "the old session to close", 5000);
  } finally {
    await client.close();
  }
});

test("with weights that favour bandwidth only, and the client's direct uplink shaped to 5 Mbit/s, the session runs on the routed line", async (t) => {
  const { topo, server } = lines;
  if (!topo || !server) return t.skip(lines.skip);
  const { direct, routed } = topo;
  await topo.run("tc", ["qdisc", "add", "dev", direct.clientIf, "root", "tbf", "rate", "5mbit", "burst", "32kbit", "latency", "50ms"]);
  const client = createClient({ lingerMs: 0, linePreference: { bandwidth: 1 } });
  try {
    const a = await client.connect({ host: direct.server.v4, port: server.port, app: "a" });
    await client.connect({ host: routed.server.v4, port: server.port, app: "b" });
    await waitFor(() => onLine(client, routed), "the session to move to the routed line", 5000);
    assert.equal((await a.request("x")).toString(), "x");
    const row = client.sessions()[0]!;
    t.diagnostic(`line ${JSON.stringify(row.line)}`);
    assert.equal(row.line?.routers, 1);
    assert.equal(row.line?.pathMtu, 1400);
  } finally {
    await client.close();
    await topo.run("tc", ["qdisc", "del", "dev", direct.clientIf, "root"]).catch(() => {});
  }
  // The same shaped uplink with the default weights: routers, MTU and RTT still favour the direct line.
  await topo.run("tc", ["qdisc", "add", "dev", direct.clientIf, "root", "tbf", "rate", "5mbit", "burst", "32kbit", "latency", "50ms"]);
  const plain = createClient({ lingerMs: 0 });
  try {
    await plain.connect({ host: direct.server.v4, port: server.port, app: "a" });
    await plain.connect({ host: routed.server.v4, port: server.port, app: "b" });
    await waitFor(() => plain.sessions()[0]?.line !== null, "the line to be measured", 5000);
    await sleep(300);
    assert.ok(onLine(plain, direct), `still on the direct line (over either family), not ${onAddress(plain).join(", ")}`);
    t.diagnostic(`default weights, shaped direct line: ${JSON.stringify(plain.sessions()[0]!.line)}`);
  } finally {
    await plain.close();
    await topo.run("tc", ["qdisc", "del", "dev", direct.clientIf, "root"]).catch(() => {});
  }
});

test("taking the better line down moves the links to the other with no error seen; bringing it back moves them back with 0 failed requests", async (t) => {
  const { topo, server } = lines;
  if (!topo || !server) return t.skip(lines.skip);
  const { direct, routed } = topo;
  const client = createClient({ lingerMs: 0, lineRefreshMs: 500 });
  try {
    const a = await client.connect({ host: direct.server.v4, port: server.port, app: "a" });
    await client.connect({ host: routed.server.v4, port: server.port, app: "b" });
    assert.ok(onLine(client, direct), `on the direct line, not ${onAddress(client).join(", ")}`);
    const run = pacedRequests(a, { everyMs: 50, maxMs: 15_000 });
    await sleep(300);
    const downAt = Date.now();
    await topo.setLineUp(direct, false);
    let upAt = 0;
    try {
      await waitFor(() => onLine(client, routed), "the links to move to the routed line", 5000);
      t.diagnostic(`moved to the routed line ${Date.now() - downAt} ms after the direct line went down`);
      await sleep(1000);
    } finally {
      await topo.setLineUp(direct, true);
      upAt = Date.now();
    }
    // From here on, requests that are not idempotent: the move back must not fail any.
    const strict = pacedRequests(a, { everyMs: 20, maxMs: 8000, idempotent: false });
    await waitFor(() => onLine(client, direct), "the links to move back to the direct line", 8000);
    t.diagnostic(`moved back ${Date.now() - upAt} ms after the direct line came up`);
    await sleep(500);
    const records = await run.stop(3000);
    const strictRecords = await strict.stop(3000);
    t.diagnostic(`${records.length} idempotent and ${strictRecords.length} non-idempotent requests; switches ${client.lineStats.switches}`);
    assert.deepEqual(describeFailures(records), [], "no idempotent request fails across the failure and the move back");
    assert.deepEqual(describeFailures(strictRecords), [], "no request fails while the links move back");
    await waitFor(() => client.socketsInUse === 1, "the routed session to close", 5000);
  } finally {
    await client.close();
  }
});

test("perilink call with two addresses of one server rides the better line and shows it; --prefer weighs the measures", async (t) => {
  const { topo, server } = lines;
  if (!topo || !server) return t.skip(lines.skip);
  const { direct, routed } = topo;
  const env = { ...process.env, PERILINK_STATE_DIR: tempDir("perilink-call-") };
  const targets = [`${routed.server.v4}:${server.port}`, `${direct.server.v4}:${server.port}`];
  type Out = { sessions: { communicationAddress: string; line: { routers: number; pathMtu: number; score: number } | null }[] };
  const plain = await runCli(["call", ...targets, "--json"], { env, timeoutMs: 30_000 });
  assert.equal(plain.code, 0, plain.stderr);
  const rows = (JSON.parse(plain.stdout) as Out).sessions;
  t.diagnostic(`default: ${JSON.stringify(rows[0])}`);
  // Either address of the line: the server announces its IPv6 ones too (ADDRESSES).
  const on = [...new Set(rows.map((r) => r.communicationAddress))];
  assert.equal(on.length, 1);
  assert.ok([direct.server.v4, direct.server.v6].includes(on[0]!), `on ${on[0]}`);
  assert.equal(rows[0]!.line?.routers, 0);
  await topo.run("tc", ["qdisc", "add", "dev", direct.clientIf, "root", "tbf", "rate", "5mbit", "burst", "32kbit", "latency", "50ms"]);
  try {
    const weighed = await runCli(["call", ...targets.reverse(), "--json", "--prefer", "bandwidth=1"], { env, timeoutMs: 30_000 });
    assert.equal(weighed.code, 0, weighed.stderr);
    const rows2 = (JSON.parse(weighed.stdout) as Out).sessions;
    t.diagnostic(`--prefer bandwidth=1, direct uplink shaped: ${JSON.stringify(rows2[0])}`);
    const on2 = [...new Set(rows2.map((r) => r.communicationAddress))];
    assert.equal(on2.length, 1);
    assert.ok([routed.server.v4, routed.server.v6].includes(on2[0]!), `on ${on2[0]}`);
  } finally {
    await topo.run("tc", ["qdisc", "del", "dev", direct.clientIf, "root"]).catch(() => {});
  }
  const bad = await runCli(["call", ...targets, "--prefer", "fast"], { env, timeoutMs: 30_000 });
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--prefer/);
});

/** Routers as a measure can count them here: Deno cannot limit IPv6 hops, so it reports none rather than a wrong count. */
const expectedRouters = (routers: number, family: "v4" | "v6"): number | null => (family === "v6" && !detectRuntime().canLimitIpv6Hops ? null : routers);

test("each line measures its routers, path MTU and interface bandwidth, over IPv4 and IPv6", async (t) => {
  const { topo, server } = lines;
  if (!topo || !server) return t.skip(lines.skip);
  for (const [line, family] of [
    [topo.direct, "v4"],
    [topo.routed, "v4"],
    [topo.direct, "v6"],
    [topo.routed, "v6"],
  ] as const) {
    const m = await measureLine(line.server[family], server.port, { system: linuxLineSystem, maxHops: LINE_MAX_HOPS, timeoutMs: 1000, serverId: server.serverId });
    t.diagnostic(`${line.server[family]}: ${JSON.stringify(m)}`);
    assert.ok(m.reachable);
    assert.equal(m.routers, expectedRouters(line.routers, family));
    assert.equal(m.pathMtu, line.mtu);
    assert.equal(m.bandwidthMbps, 10_000, "veth reports 10000 Mb/s");
    assert.ok(m.probesSent <= 4);
    await sleep(100);
  }
});

test("a smaller MTU beyond the first router is learned: the padded probe teaches the kernel the path MTU and the measure reports it", async (t) => {
  const { topo, server } = lines;
  if (!topo || !server) return t.skip(lines.skip);
  const t0 = topo;
  // The R–B link (both ends) drops to 1300 while A's own link to R stays at 1400.
  const rToB = (await t0.ip(["-n", t0.routerNs, "-j", "route", "get", t0.routed.server.v4]));
  const dev = (JSON.parse(rToB) as { dev: string }[])[0]!.dev;
  const bDev = (JSON.parse(await t0.ip(["-n", t0.serverNs, "-j", "route", "get", t0.routed.client.v4])) as { dev: string }[])[0]!.dev;
  const setMtu = async (mtu: number): Promise<void> => {
    await t0.ip(["-n", t0.routerNs, "link", "set", dev, "mtu", String(mtu)]);
    await t0.ip(["-n", t0.serverNs, "link", "set", bDev, "mtu", String(mtu)]);
  };
  await setMtu(1300);
  try {
    for (const family of ["v4", "v6"] as const) {
      const address = t0.routed.server[family];
      await t0.ip(["route", "flush", "cache"]).catch(() => {});
      const m = await measureLine(address, server.port, { system: linuxLineSystem, maxHops: LINE_MAX_HOPS, timeoutMs: 1000, serverId: server.serverId });
      t.diagnostic(`${address}: pathMtu ${m.pathMtu}, routers ${m.routers}, ${m.ms.toFixed(0)} ms, ${m.probesSent} probes`);
      assert.equal(m.pathMtu, 1300);
      assert.equal(m.routers, expectedRouters(1, family));
    }
  } finally {
    await setMtu(1400);
  }
});
