/**
 * The app's handoff with service processes (docs/apps.md, "Upgrades"): each
 * service process's state goes to the process in its slot of the next group,
 * through the two managers; descriptors cannot pass there and put() says so.
 */
import assert from "node:assert/strict";
import { promises as fs, readdirSync, readlinkSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { REPO_ROOT } from "../helpers/cli.ts";
import { tempDir, waitFor } from "../helpers/fixtures.ts";
import { nodeOnly, seenPids, serveGroup, upgradeGroup, type ServedGroup } from "../helpers/group.ts";

const APP = path.join(REPO_ROOT, "test/fixtures/slot_state_app.ts");

function readlinkOr(p: string): string {
  try {
    return readlinkSync(p);
  } catch {
    return "";
  }
}

interface Who {
  slot: number;
  pid: number;
  count: number;
  received: { slot: number; pid: number; count: number } | null;
  putError: string | null;
}

/** One request on a session of its own (manager dispatch passes each new connection to the freest process). */
async function ask(g: ServedGroup, what: string): Promise<Record<string, unknown>> {
  const s = await ClientSession.connect({ host: "127.0.0.1", port: g.port, timeoutMs: 5000 });
  try {
    const ch = await s.openChannel("t");
    return JSON.parse((await ch.request(what)).toString()) as Record<string, unknown>;
  } finally {
    s.destroy();
  }
}

/** The old group gone and `n` new service processes ready (a rolling upgrade starts the last ones after the old ones exit). */
async function settled(g: ServedGroup, n: number): Promise<void> {
  await waitFor(
    async () => {
      const s = await g.status();
      return s.draining.length === 0 && s.workers.filter((w) => w.state === "ready").length === n;
    },
    `the old group gone and ${n} new service processes ready`,
    30_000,
  );
}

/** "whoami" of every slot of the serving group: asked until each of `slots` answered (at most 200 sessions). */
async function everySlot(g: ServedGroup, slots: number): Promise<Map<number, Who>> {
  const by = new Map<number, Who>();
  for (let i = 0; i < 200 && by.size < slots; i++) {
    const w = (await ask(g, "whoami")) as unknown as Who;
    seenPids.add(w.pid);
    by.set(w.slot, w);
  }
  assert.equal(by.size, slots, `every slot answered: ${[...by.keys()]}`);
  return by;
}

for (const surge of [2, 1] as const) {
  test(`--workers 2, upgradeSurge ${surge}: each service process starts from the state its slot's process of the old group put and the old ones' drain() is told they were handed over; a process restarted later starts without; put() of a descriptor is PERILINK_HANDOFF with the reason`, async (t) => {
    if (nodeOnly(t)) return;
    const config = path.join(tempDir(), "config.json");
    await fs.writeFile(config, JSON.stringify({ dispatch: "manager", limits: { upgradeSurge: surge } }));
    const drains = path.join(tempDir(), "drains.txt");
    const g = await serveGroup(["--config", config, "--app", APP, "--workers", "2"], { SLOT_STATE_LOG: drains });
    await waitFor(async () => (await g.status()).workers.filter((w) => w.state === "ready").length === 2, "both service processes", 20_000);
    // Requests on both slots, so that each has a count of its own.
    const counts = new Map<number, number>();
    for (let i = 0; i < 40; i++) {
      const r = (await ask(g, "count")) as { slot: number; count: number };
      counts.set(r.slot, r.count);
    }
    assert.equal(counts.size, 2, "both slots served");
    const first = await everySlot(g, 2);
    for (const [slot, w] of first) {
      assert.equal(w.received, null, "a fresh start inherits nothing");
      assert.equal(w.count, counts.get(slot));
      assert.match(w.putError ?? "", /^PERILINK_HANDOFF: Cannot hand on "scratch": a service process \(--workers\) cannot pass descriptors/);
    }
    await upgradeGroup(g);
    await settled(g, 2);
    const next = await everySlot(g, 2);
    for (const [slot, w] of next) {
      assert.notEqual(w.pid, first.get(slot)!.pid, "a new process");
      assert.deepEqual(w.received, { slot, pid: first.get(slot)!.pid, count: counts.get(slot) }, `slot ${slot} got what its old process put last`);
      assert.equal(w.count, counts.get(slot), "and goes on counting from it");
    }
    const drained = (await fs.readFile(drains, "utf8")).trim().split("\n").sort();
    assert.deepEqual(drained, [...first.values()].map((w) => `drain ${w.pid} true`).sort(), "each old process's drain() was told a new generation took over");
    // Once more: what the second generation put reaches the third.
    const more = (await ask(g, "count")) as { slot: number; count: number };
    counts.set(more.slot, more.count);
    await upgradeGroup(g);
    await settled(g, 2);
    const third = await everySlot(g, 2);
    for (const [slot, w] of third) {
      assert.deepEqual(w.received, { slot, pid: next.get(slot)!.pid, count: counts.get(slot) });
    }
    // A process that starts after the group did (here a restart after a crash) starts without: no state left over from the upgrade.
    process.kill(third.get(1)!.pid, "SIGKILL");
    await waitFor(async () => (await g.status()).workers.some((w) => w.slot === 1 && w.state === "ready" && w.pid !== third.get(1)!.pid), "slot 1 restarted", 20_000);
    const restarted = (await everySlot(g, 2)).get(1)!;
    assert.notEqual(restarted.pid, third.get(1)!.pid);
    assert.equal(restarted.received, null, "a restart starts without the upgrade's state");
    assert.equal(restarted.count, 0);
    t.diagnostic(`counts by slot handed through two group upgrades: ${JSON.stringify(Object.fromEntries(counts))}`);
    await g.stop();
  });
}

test("an upgrade from one process to a group (the configuration changed) gives each service process the one process's state; from a group back to one process, slot 0's", async (t) => {
  if (nodeOnly(t)) return;
  const config = path.join(tempDir(), "config.json");
  const write = (workers: number): Promise<void> => fs.writeFile(config, JSON.stringify({ dispatch: "manager", workers }));
  await write(1);
  const scratch = path.join(tempDir(), "scratch");
  const g = await serveGroup(["--config", config, "--app", APP], { SLOT_STATE_SCRATCH: scratch });
  let last = { slot: 0, count: 0 };
  for (let i = 0; i < 5; i++) last = (await ask(g, "count")) as typeof last;
  const one = (await ask(g, "whoami")) as unknown as Who;
  seenPids.add(one.pid);
  assert.equal(one.slot, -1, "one process: no slot");
  assert.equal(one.putError, null, "one process may pass descriptors");
  await write(2);
  await upgradeGroup(g);
  await settled(g, 2);
  const group = await everySlot(g, 2);
  for (const w of group.values()) assert.deepEqual(w.received, { slot: -1, pid: one.pid, count: last.count }, `slot ${w.slot} starts from the one process's state`);
  const manager = (await g.status()).pid;
  const held = readdirSync(`/proc/${manager}/fd`).filter((fd) => readlinkOr(`/proc/${manager}/fd/${fd}`) === scratch);
  assert.deepEqual(held, [], "the descriptor the one process put is closed in the new manager, which has no app to take it");
  assert.match(g.log(), /"handoff_untaken_closed"[^\n]*"scratch"/);
  await write(1);
  await upgradeGroup(g);
  await waitFor(async () => (await g.status()).draining.length === 0, "the group to exit", 30_000);
  const back = (await ask(g, "whoami")) as unknown as Who;
  seenPids.add(back.pid);
  assert.deepEqual(back.received, { slot: 0, pid: group.get(0)!.pid, count: group.get(0)!.count }, "slot 0's state");
  await g.stop();
});
