import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { interleaveFamilies, raceAddresses } from "../../src/client/names/address_race.ts";
import { ClientClosedError, KeyMismatchError, ServerChangedError } from "../../src/errors.ts";
import { answerFrom, FakeNameService } from "../helpers/fake_name_service.ts";
import { portOf, sleep, testServer } from "../helpers/fixtures.ts";

test("interleaveFamilies alternates IPv6 and IPv4, the first address's family first, each in its order", () => {
  assert.deepEqual(interleaveFamilies(["10.0.0.1", "10.0.0.2", "fd00::1", "10.0.0.3", "fd00::2"]), ["10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2", "10.0.0.3"]);
  assert.deepEqual(interleaveFamilies(["fe80::1%eth0", "10.0.0.1", "10.0.0.2"]), ["fe80::1%eth0", "10.0.0.1", "10.0.0.2"]);
  assert.deepEqual(interleaveFamilies(["10.0.0.1"]), ["10.0.0.1"]);
});

test("raceAddresses: probes start staggered, a failure starts the next at once, the first success wins", async () => {
  const started: [string, number][] = [];
  const t0 = performance.now();
  const won = await raceAddresses(
    ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"],
    async (a) => {
      started.push([a, performance.now() - t0]);
      if (a === "10.0.0.1") throw new Error("refused at once");
      if (a === "10.0.0.2") return sleep(2000).then(() => "slow");
      if (a === "10.0.0.3") return sleep(20).then(() => "fast");
      return "late";
    },
    100,
  );
  assert.deepEqual(won, { value: "fast", address: "10.0.0.3" });
  assert.deepEqual(started.map(([a]) => a), ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "the fourth never started: the third had won");
  assert.ok(started[1]![1] < 50, "a failure started the next one at once");
  assert.ok(started[2]![1] >= 90, "the third waited for the stagger");
});

test("raceAddresses: a closed client ends the race at once; all failing throws the most telling failure", async () => {
  const closed = new ClientClosedError("closed");
  await assert.rejects(raceAddresses(["10.0.0.1", "10.0.0.2"], async (a) => (a === "10.0.0.1" ? Promise.reject(closed) : sleep(500).then(() => 1)), 1000), (e) => e === closed);
  await assert.rejects(raceAddresses(["10.0.0.1", "10.0.0.2"], async (a) => Promise.reject(new Error(`no ${a}`)), 10), /no 10\.0\.0\.2/);
  const mismatch = new KeyMismatchError("x", "another key");
  const changed = new ServerChangedError("printer", 1, { serverId: null, keyFingerprint: "a" }, { serverId: "b", keyFingerprint: "c" }, "changed");
  const fails: Record<string, Error> = { "10.0.0.1": mismatch, "10.0.0.2": changed, "10.0.0.3": new Error("dead") };
  await assert.rejects(raceAddresses(Object.keys(fails), async (a) => Promise.reject(fails[a]), 10), (e) => e === mismatch);
  delete fails["10.0.0.1"];
  await assert.rejects(raceAddresses(Object.keys(fails), async (a) => Promise.reject(fails[a]), 10), (e) => e === changed);
});

test("raceAddresses: an impostor of a pinned server among the addresses costs one probe, not the race", async () => {
  const won = await raceAddresses(["10.0.0.1", "10.0.0.2"], async (a) => (a === "10.0.0.1" ? Promise.reject(new KeyMismatchError("x", "another key")) : sleep(20).then(() => 7)), 1000);
  assert.deepEqual(won, { value: 7, address: "10.0.0.2" });
});

test("a name whose first 8 addresses are dead connects within 1.5 s (was 9 s: one probe timeout and a TCP fallback each, in turn)", async (t) => {
  const server = await testServer({ listen: ["127.0.0.1:0"] });
  const port = portOf(server);
  const dns = await new FakeNameService().start();
  const dead = Array.from({ length: 8 }, (_, i) => `127.0.0.${101 + i}`);
  dns.reply = (q) => [{ data: answerFrom({ "printer.test": [...dead, "127.0.0.1"] }, q) }];
  const c = createClient({ lingerMs: 0, stateDir: false, resolution: { order: ["dns"], nameServers: [dns.endpoint], timeoutMs: 500 } });
  try {
    const t0 = performance.now();
    const link = await c.connect({ host: "printer.test", port, app: "a" });
    const ms = performance.now() - t0;
    assert.equal((await link.request("hi")).toString(), "hi");
    assert.ok(ms <= 1500, `connected in ${Math.round(ms)} ms`);
    t.diagnostic(`connected in ${Math.round(ms)} ms`);
  } finally {
    await c.close();
  }
});
