import assert from "node:assert/strict";
import path from "node:path";
import { after, test } from "node:test";
import { HostAgent } from "../../src/agent/host_agent.ts";
import { HostClient } from "../../src/agent/host_client.ts";
import { SlotShare } from "../../src/agent/slot_share.ts";
import { silentLogger } from "../../src/logger.ts";
import type { SessionApp } from "../../src/server/app.ts";
import { portOf, tempDir, testServer, waitFor } from "../helpers/fixtures.ts";

test("a process whose requests hang holds at most its share of the session's slots: another process's request is answered at once, and every held one completes", async () => {
  let hanging = 0;
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const app: SessionApp = {
    async request(payload: Uint8Array) {
      if (Buffer.from(payload).toString() !== "hang") return "fast";
      hanging++;
      await released;
      hanging--;
      return "done";
    },
  };
  const server = await testServer({ appObject: app, limits: { maxInflightPerSession: 8 } });
  const agent = await HostAgent.start({ socketPath: path.join(tempDir(), "s", "agent.sock"), client: { stateDir: false, lingerMs: 0 }, log: silentLogger });
  after(() => agent.close());
  const hog = new HostClient({ agent: true, agentSocket: agent.socketPath });
  const other = new HostClient({ agent: true, agentSocket: agent.socketPath });
  after(() => Promise.all([hog.close(), other.close()]));
  const port = portOf(server);

  const hogLink = await hog.connect({ host: "127.0.0.1", port, app: "a" });
  await hogLink.request("warm"); // the session is open, so the agent knows its 8 slots
  const held = Array.from({ length: 20 }, () => hogLink.request("hang", { timeoutMs: 20_000 }).then(String));
  await waitFor(() => hanging === SlotShare.share(8, 1), `the hog's share (${SlotShare.share(8, 1)}) hanging at the server`);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(hanging, 7, "one process alone holds 7 of the 8 slots, not all of them");

  const otherLink = await other.connect({ host: "127.0.0.1", port, app: "b" });
  const t0 = performance.now();
  assert.equal((await otherLink.request("ping", { timeoutMs: 2000 })).toString(), "fast");
  const ms = performance.now() - t0;
  assert.ok(ms < 1000, `the other process was answered in ${ms.toFixed(0)} ms, beside the hog's 20 hanging requests`);

  release();
  assert.deepEqual(await Promise.all(held), Array(20).fill("done"), "every one of the hog's requests ran, the waiting ones after");
});

test("a request waiting in the agent for its process's share fails PERILINK_REQUEST_TIMEOUT at its own deadline, and one waiting when its process goes is let go of", async () => {
  const share = new SlotShare();
  const server = {};
  const a = {};
  const b = {};
  for (let i = 0; i < SlotShare.share(8, 1); i++) assert.equal(share.acquire(server, 8, a, 1000), null);
  const late = share.acquire(server, 8, a, 50);
  assert.ok(late instanceof Promise, "past its share it waits");
  await assert.rejects(late, (e: unknown) => (e as { code?: string }).code === "PERILINK_REQUEST_TIMEOUT" && /waited all 50 ms in the agent/.test((e as Error).message));
  // A second process: the share of each is now 3 (7 of 8, halved); b gets its own at once.
  assert.equal(share.acquire(server, 8, b, 1000), null);
  const waiting = share.acquire(server, 8, a, 10_000)!;
  share.drop(a, new Error("gone"));
  await assert.rejects(waiting, /gone/);
  // a gives back its 7 one by one: b may take up to 3 in all, and a's own count falls.
  for (let i = 0; i < 7; i++) share.release(server, a);
  assert.equal(share.held(server, a), 0);
  assert.equal(share.acquire(server, 8, b, 1000), null);
  assert.equal(share.held(server, b), 2);
  share.release(server, b);
  share.release(server, b);
  assert.equal(share.held(server, b), 0);
});
