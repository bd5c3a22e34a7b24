import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { loadOrCreateClientKey } from "../../src/client/client_key.ts";
import { ServerBusyError } from "../../src/errors.ts";
import { Admission, VOUCHED_PEERS_MAX, VOUCHED_PEER_MS } from "../../src/server/admission.ts";
import { resolveConfig } from "../../src/server/config.ts";
import type { ServerLimits } from "../../src/server/limits.ts";
import { controlRequest } from "../../src/server/control_server.ts";
import type { ServerStatus } from "../../src/server/server.ts";
import { REPO_ROOT, runCli, spawnCli, stopChild } from "../helpers/cli.ts";
import { portOf, tempDir, testServer, waitFor } from "../helpers/fixtures.ts";
import { skipUnlessHandoff } from "../helpers/migration.ts";
import { killPids } from "../helpers/pid_alive.ts";

const echo = { request: (p: Buffer) => p };

test("handshakes are rate-limited per peer and over all peers by default, on every target (each costs a key exchange and a signature)", () => {
  const limits = resolveConfig({}).limits;
  assert.ok(limits.sessionRatePerPeer > 0 && limits.sessionRateGlobal > 0, JSON.stringify(limits));
  for (const f of readdirSync(path.join(REPO_ROOT, "targets")).filter((f) => f.endsWith(".json"))) {
    const t = JSON.parse(readFileSync(path.join(REPO_ROOT, "targets", f), "utf8")) as { server: ServerLimits; probe: { ratePerSecond: number; globalRatePerSecond: number } };
    assert.ok(t.server.sessionRatePerPeer > 0 && t.server.sessionRatePerPeer <= t.probe.ratePerSecond, `${f}: a TCP handshake costs more than a probe`);
    assert.ok(t.server.sessionRateGlobal > 0 && t.server.sessionRateGlobal <= t.probe.globalRatePerSecond, f);
  }
  assert.equal(resolveConfig({ limits: { sessionRateGlobal: 0 } }).limits.sessionRateGlobal, 0, "0 turns it off");
  assert.throws(() => resolveConfig({ limits: { sessionRateGlobal: -1 } }), /sessionRateGlobal/);
});

test("a handshake flood from many addresses is held to sessionRateGlobal, while a peer vouched for (it proved a trusted key) still gets in", async () => {
  const stateDir = tempDir();
  const server = await testServer({ access: "keys", appObject: echo, stateDir, limits: { sessionRatePerPeer: 0, sessionRateGlobal: 1, sessionBurstGlobal: 4 } });
  const port = portOf(server);
  const trusted = loadOrCreateClientKey(stateDir); // the state directory's own key is trusted
  const first = await ClientSession.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.30", clientKey: trusted });
  assert.equal((await (await first.openChannel("printer")).request("hi")).toString(), "hi");
  first.destroy();
  // Strangers from 24 addresses, one session each: the global burst (3 left) and the refill admit a few.
  const t0 = performance.now();
  const flood = await Promise.allSettled(
    Array.from({ length: 24 }, (_, i) => ClientSession.connect({ host: "127.0.0.1", port, localAddress: `127.0.0.${40 + i}`, timeoutMs: 3000 })),
  );
  const refilled = Math.ceil((performance.now() - t0) / 1000); // 1 a second
  const admitted = flood.filter((r) => r.status === "fulfilled").length;
  assert.ok(admitted >= 3 && admitted <= 3 + refilled, `the global burst (3 left) and its refill over ${refilled} s admitted ${admitted}`);
  for (const r of flood) {
    if (r.status === "fulfilled") r.value.destroy();
    else assert.ok(r.reason instanceof ServerBusyError, String(r.reason));
  }
  // The bucket is empty now, yet the vouched peer opens sessions as before.
  const emptiedAt = performance.now();
  for (let i = 0; i < 3; i++) {
    const again = await ClientSession.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.30", clientKey: trusted });
    again.destroy();
  }
  // Strangers again: only what refilled since (1 a second; the vouched sessions took none) gets in.
  const late = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => ClientSession.connect({ host: "127.0.0.1", port, localAddress: `127.0.0.${90 + i}`, timeoutMs: 3000 })));
  const since = Math.ceil((performance.now() - emptiedAt) / 1000);
  const lateIn = late.filter((r) => r.status === "fulfilled").length;
  assert.ok(lateIn <= since, `${lateIn} strangers admitted after the flood, ${since} s of refill`);
  for (const r of late) {
    if (r.status === "fulfilled") r.value.destroy();
    else assert.ok(r.reason instanceof ServerBusyError, String(r.reason));
  }
  assert.ok(lateIn < 6, "strangers are refused while the vouched peer gets in");
});

const host = { budgetOver: () => false, makeRoom: () => true };
const limits = (over: Partial<ServerLimits>): ServerLimits => ({ ...resolveConfig({}).limits, sessionRatePerPeer: 0, ...over });

test("the vouched peers pass to the process an upgrade starts: it admits them under an empty global bucket, and ignores what is not a peer and a time", () => {
  const old = new Admission(limits({ sessionRateGlobal: 1, sessionBurstGlobal: 1 }), 64, host);
  old.vouch("10.0.0.1");
  old.vouch("2001:db8:1:2::7"); // counted by its /64
  const handed = old.vouchedPeers();
  assert.deepEqual(handed.map(([k]) => k), ["10.0.0.1", "2001:db8:1:2::/64"]);

  const next = new Admission(limits({ sessionRateGlobal: 1, sessionBurstGlobal: 1 }), 64, host);
  next.adoptVouched([...JSON.parse(JSON.stringify(handed)), "junk", [1, 2], ["x".repeat(100), 0], ["10.9.9.9", Date.now() + 60_000]]);
  assert.equal(next.admit("192.0.2.1"), null, "the one token");
  assert.equal(next.admit("192.0.2.2"), "sessionRateGlobal");
  assert.equal(next.admit("10.0.0.1"), null, "vouched for by the old process");
  assert.equal(next.admit("2001:db8:1:2::99"), null, "same /64");
  assert.equal(next.admit("10.9.9.9"), "sessionRateGlobal", "a time in the future is not taken");
  assert.deepEqual(next.vouchedPeers().map(([k]) => k), ["10.0.0.1", "2001:db8:1:2::/64"]);
});

test("vouching is bounded: at most VOUCHED_PEERS_MAX peers (the least recently vouched out), for VOUCHED_PEER_MS", () => {
  const a = new Admission(limits({ sessionRateGlobal: 1, sessionBurstGlobal: 1 }), 64, host);
  for (let i = 0; i < VOUCHED_PEERS_MAX + 10; i++) a.vouch(`10.1.${i >> 8}.${i & 255}`);
  const list = a.vouchedPeers();
  assert.equal(list.length, VOUCHED_PEERS_MAX);
  assert.equal(list[0]![0], "10.1.0.10", "the first ten are gone");
  const b = new Admission(limits({ sessionRateGlobal: 1, sessionBurstGlobal: 1 }), 64, host);
  b.adoptVouched([["10.2.0.1", Date.now() - VOUCHED_PEER_MS - 1], ["10.2.0.2", Date.now() - 1000]]);
  assert.deepEqual(b.vouchedPeers().map(([k]) => k), ["10.2.0.2"], "an expired one is not taken over");
});

test("after an upgrade the new process still admits the peers the old one vouched for, under an empty global bucket", async (t) => {
  if (skipUnlessHandoff(t)) return;
  const stateDir = tempDir();
  const cfg = path.join(tempDir("perilink-config-"), "perilink.json");
  writeFileSync(cfg, JSON.stringify({ listen: ["127.0.0.1:0"], rescanIntervalMs: 0, limits: { sessionRatePerPeer: 0, sessionRateGlobal: 1, sessionBurstGlobal: 1 } }));
  const child = spawnCli(["serve", "--access", "keys", "--config", cfg, "--state-dir", stateDir]);
  let log = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (log += s));
  const pids = new Set<number>([child.pid!]);
  after(async () => {
    killPids(pids);
    await stopChild(child, 2000);
  });
  await waitFor(() => log.includes('"server_started"') || child.exitCode !== null, "the server to start", 20_000);
  const status = async () => (await controlRequest(stateDir, { op: "status" })) as ServerStatus;
  const port = (await status()).listeners.find((l) => l.transport === "tcp")!.port;
  const trusted = loadOrCreateClientKey(stateDir);
  const ask = async (localAddress: string, clientKey?: ReturnType<typeof loadOrCreateClientKey>) => {
    const s = await ClientSession.connect({ host: "127.0.0.1", port, localAddress, timeoutMs: 3000, ...(clientKey ? { clientKey } : {}) });
    s.destroy();
  };
  await ask("127.0.0.30", trusted); // the one token; 127.0.0.30 is vouched for now
  await assert.rejects(ask("127.0.0.31"), ServerBusyError);
  const up = await runCli(["upgrade", "--state-dir", stateDir, "--json"], { timeoutMs: 30_000 });
  assert.equal(up.code, 0, up.stderr);
  const gen2 = await status();
  pids.add(gen2.pid);
  assert.equal(gen2.generation, 2);
  await ask("127.0.0.41"); // the new process's one token
  await assert.rejects(ask("127.0.0.42"), ServerBusyError);
  await ask("127.0.0.30", trusted); // handed over: admitted without a token
});
