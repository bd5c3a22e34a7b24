/**
 * C5 on silent failures, in the two-line topology (test/helpers/netns_topology.ts):
 * the session runs on the direct line; the line then fails without a word
 * (packets discarded both ways, or the client's end of the link down). The
 * client must notice (PING with a deadline while requests are outstanding)
 * and move its links to the routed address, with no idempotent request
 * failing. Needs root and ip netns; skips otherwise.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import type { Line } from "../helpers/netns_topology.ts";
import { describeFailures, pacedRequests } from "../helpers/paced_requests.ts";
import { twoLinesPerFile } from "../helpers/two_lines.ts";
import { sleep, waitFor } from "../helpers/fixtures.ts";

const lines = twoLinesPerFile();

/** Target of the feature: requests flow again through the other address within this. */
const FLOW_AGAIN_MS = 3000;

async function silentFailure(t: { skip(m?: string): void; diagnostic(m: string): void }, fail: (line: Line) => Promise<void>, restore: (line: Line) => Promise<void>): Promise<void> {
  const { topo, server } = lines;
  if (!topo || !server) return t.skip(lines.skip);
  const { direct, routed } = topo;
  // Default options: the default request timeout, the default liveness settings.
  const client = createClient({ lingerMs: 0 });
  try {
    const a = await client.connect({ host: direct.server.v4, port: server.port, app: "a" });
    const b = await client.connect({ host: routed.server.v4, port: server.port, app: "b" });
    assert.equal(client.sessions()[0]!.communicationAddress, direct.server.v4, "the session starts on the direct line");
    assert.equal(client.socketsInUse, 1);
    const run = pacedRequests(a, { everyMs: 50, maxMs: 8000 });
    const other = pacedRequests(b, { everyMs: 200, maxMs: 8000 });
    await sleep(500);
    const failedAt = Date.now();
    await fail(direct);
    try {
      await sleep(5000);
      const records = await run.stop(5000);
      const others = await other.stop(5000);
      const failures = describeFailures([...records, ...others]);
      const late = records.filter((r) => r.startedAt >= failedAt);
      const worst = Math.max(...late.map((r) => (r.endedAt ?? Infinity) - r.startedAt));
      const firstAfter = Math.min(...late.filter((r) => r.endedAt !== null && r.error === null).map((r) => r.endedAt!)) - failedAt;
      const moved = client.sessions().map((r) => r.communicationAddress);
      t.diagnostic(`requests ${records.length + others.length}, failed or unfinished ${failures.length}, first answer after the failure ${firstAfter} ms, slowest request started after it ${worst} ms, session on ${moved.join(",")}`);
      assert.deepEqual(failures, [], "every idempotent request succeeds");
      assert.ok(firstAfter <= FLOW_AGAIN_MS, `requests flow again within ${FLOW_AGAIN_MS} ms (first answer ${firstAfter} ms after the failure)`);
      assert.ok(worst <= FLOW_AGAIN_MS, `no request started after the failure waits more than ${FLOW_AGAIN_MS} ms (slowest ${worst} ms)`);
      // Either address of the routed line: the server announces its IPv6 one too (ADDRESSES).
      assert.equal(new Set(moved).size, 1);
      assert.ok([routed.server.v4, routed.server.v6].includes(moved[0]!), `the session moved to the routed line (on ${moved[0]})`);
      await waitFor(() => client.socketsInUse === 1, "the dead session's socket to be let go", 5000);
    } finally {
      await restore(direct);
    }
  } finally {
    await client.close();
  }
}

test("a line that silently discards both ways (blackhole at both ends) is noticed and the links move to the other address within 3 s, no idempotent request failing", async (t) => {
  await silentFailure(
    t,
    (l) => lines.topo!.setBlackhole(l, true),
    (l) => lines.topo!.setBlackhole(l, false),
  );
});

test("a line whose client end goes down (a pulled cable) is noticed and the links move to the other address within 3 s, no idempotent request failing", async (t) => {
  await silentFailure(
    t,
    (l) => lines.topo!.setLineUp(l, false),
    (l) => lines.topo!.setLineUp(l, true),
  );
});

test("a request not marked idempotent that was in flight on a silently dead line fails with PERILINK_OUTCOME_UNKNOWN; the next one succeeds on the other address", async (t) => {
  const { topo, server } = lines;
  if (!topo || !server) return t.skip(lines.skip);
  const { direct, routed } = topo;
  const client = createClient({ lingerMs: 0 });
  try {
    const a = await client.connect({ host: direct.server.v4, port: server.port, app: "a" });
    await client.connect({ host: routed.server.v4, port: server.port, app: "b" });
    assert.equal((await a.request("before")).toString(), "before");
    await topo.setBlackhole(direct, true);
    try {
      const started = Date.now();
      await assert.rejects(a.request("in flight"), (err: Error & { code?: string }) => err.code === "PERILINK_OUTCOME_UNKNOWN");
      const ms = Date.now() - started;
      t.diagnostic(`the request failed after ${ms} ms`);
      assert.ok(ms <= FLOW_AGAIN_MS, `it fails within ${FLOW_AGAIN_MS} ms, not at its 30 s deadline (${ms} ms)`);
      assert.equal((await a.request("after")).toString(), "after");
      assert.ok([routed.server.v4, routed.server.v6].includes(client.sessions()[0]!.communicationAddress!), "on the routed line, over either of its addresses");
    } finally {
      await topo.setBlackhole(direct, false);
    }
  } finally {
    await client.close();
  }
});
