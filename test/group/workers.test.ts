import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { identifyUdp } from "../../src/client/identify.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { REPO_ROOT, runCli } from "../helpers/cli.ts";
import { sleep, tempDir, waitFor } from "../helpers/fixtures.ts";
import { httpGet, nodeOnly, serveGroup, tally } from "../helpers/group.ts";
import { promises as fs } from "node:fs";

const HTTP_APP = path.join(REPO_ROOT, "test/fixtures/http_app.ts");
const CRASHING_APP = path.join(REPO_ROOT, "test/fixtures/crashing_app.ts");
const RECORDING_APP = path.join(REPO_ROOT, "test/fixtures/recording_app.ts");

/** `n` HTTP GETs, `concurrency` at a time; returns the pid that answered each. */
async function httpPids(port: number, n: number, concurrency: number): Promise<number[]> {
  const pids: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const body = await httpGet(port, `/r${i}`);
        pids.push(Number(/^ok (\d+) /.exec(body)?.[1]));
      }
    }),
  );
  return pids;
}

/** Requests over `sessions` perilink sessions; returns the pid that answered each session. */
async function sessionPids(port: number, sessions: number, requests: number): Promise<number[]> {
  const out: number[] = [];
  const all = await Promise.all(Array.from({ length: sessions }, () => ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 5000 })));
  try {
    await Promise.all(
      all.map(async (s, i) => {
        const ch = await s.openChannel(`app${i}`);
        let pid = 0;
        for (let r = 0; r < requests; r++) {
          const reply = (await ch.request(`s${i}-${r}`)).toString();
          assert.match(reply, new RegExp(`^s${i}-${r}\\|pid=\\d+$`));
          const p = Number(reply.split("pid=")[1]);
          assert.ok(pid === 0 || pid === p, "one session stays with one service process");
          pid = p;
        }
        out.push(pid);
      }),
    );
  } finally {
    for (const s of all) s.destroy();
  }
  return out;
}

for (const dispatch of ["manager", "semaphore"] as const) {
  test(`--workers 2 --dispatch ${dispatch}: HTTP connections are served by both service processes, evenly`, async (t) => {
    if (nodeOnly(t)) return;
    const g = await serveGroup(["--app", HTTP_APP, "--workers", "2", "--dispatch", dispatch]);
    const st = await g.status();
    assert.equal(st.dispatch, dispatch);
    assert.equal(st.workers.length, 2);
    const workerPids = st.workers.map((w) => w.pid).sort();
    assert.ok(!workerPids.includes(st.pid), "the manager serves nothing itself");
    const pids = await httpPids(g.port, 200, 8);
    const byPid = tally(pids);
    t.diagnostic(`${dispatch}: ${JSON.stringify(Object.fromEntries(byPid))}`);
    assert.deepEqual([...byPid.keys()].sort(), workerPids, "every response came from a service process, and both served");
    for (const [, n] of byPid) assert.ok(n >= 60 && n <= 140, `balanced: ${n} of 200 on one process`);
    await waitFor(async () => (await g.status()).counters.requests === 200, "status to count 200 requests", 5000);
    const after = await g.status();
    assert.deepEqual(after.workers.map((w) => w.requests).sort(), [...byPid.values()].sort(), "each worker's requests as status reports them");
    if (dispatch === "manager") {
      assert.equal(after.counters.connectionsPassed, 200, "the manager accepted every connection and passed it on");
      assert.equal(after.counters.semaphoreTurns, 0);
    } else {
      assert.equal(after.counters.connectionsPassed, 0, "the manager accepted nothing: the service processes did, in turns");
      assert.ok(after.counters.semaphoreTurns! >= 100, `turns at the semaphore: ${after.counters.semaphoreTurns}`);
    }
  });

  test(`--workers 2 --dispatch ${dispatch}: perilink sessions spread over both service processes and answer with one identity`, async (t) => {
    if (nodeOnly(t)) return;
    const g = await serveGroup(["--app", CRASHING_APP, "--workers", "2", "--dispatch", dispatch]);
    const st = await g.status();
    const pids = await sessionPids(g.port, 8, 10);
    const byPid = tally(pids);
    assert.deepEqual([...byPid.keys()].sort(), st.workers.map((w) => w.pid).sort(), "both service processes hold sessions");
    const id = await identifyUdp("127.0.0.1", g.port);
    assert.equal(id.serverId, st.serverId, "the group answers identify with the manager's identity");
    await waitFor(async () => (await g.status()).counters.requests === 80, "status to count 80 requests", 5000);
  });
}

test("a service process killed with SIGKILL is restarted with a new pid; sessions on the other one carry on", async (t) => {
  if (nodeOnly(t)) return;
  const g = await serveGroup(["--app", CRASHING_APP, "--workers", "2"]);
  const sessions = await Promise.all([0, 1].map(() => ClientSession.connect({ host: "127.0.0.1", port: g.port, timeoutMs: 5000 })));
  const channels = await Promise.all(sessions.map((s, i) => s.openChannel(`a${i}`)));
  const pidOf = async (i: number): Promise<number> => Number((await channels[i]!.request("who")).toString().split("pid=")[1]);
  const [a, b] = [await pidOf(0), await pidOf(1)];
  assert.notEqual(a, b, "two sessions, two service processes (the least loaded gets the next)");
  const before = await g.status();
  const slotA = before.workers.find((w) => w.pid === a)!.slot;
  process.kill(a, "SIGKILL");
  // The other session never notices.
  for (let i = 0; i < 20; i++) assert.equal(await pidOf(1), b);
  await waitFor(async () => {
    const w = (await g.status()).workers.find((x) => x.slot === slotA);
    return w?.state === "ready" && w.pid !== a;
  }, "the killed slot to run again", 15_000);
  const w = (await g.status()).workers.find((x) => x.slot === slotA)!;
  assert.equal(w.restarts, 1);
  assert.match(g.log(), /"event":"worker_restarting","slot":\d,"delayMs":100,/);
  // New connections reach the restarted process too.
  const fresh = await Promise.all([0, 1, 2, 3].map(() => ClientSession.connect({ host: "127.0.0.1", port: g.port, timeoutMs: 5000 })));
  const freshPids = await Promise.all(fresh.map(async (s) => Number((await (await s.openChannel("x")).request("who")).toString().split("pid=")[1])));
  assert.ok(freshPids.includes(w.pid!), `the restarted process serves: ${freshPids} vs ${w.pid}`);
  for (const s of [...sessions, ...fresh]) s.destroy();
});

test("a client whose session was on a killed service process carries on over a new session on the other one (C5); an idempotent request in flight is sent again", async (t) => {
  if (nodeOnly(t)) return;
  const { createClient } = await import("../../src/client/client.ts");
  const g = await serveGroup(["--app", RECORDING_APP, "--workers", "2"]);
  const client = createClient({ lingerMs: 0 });
  try {
    const link = await client.connect({ host: "127.0.0.1", port: g.port, app: "c5" });
    const pidOf = (reply: Buffer): number => Number(reply.toString().split("pid=")[1]);
    const first = pidOf(await link.request("sleep:0:a"));
    const inFlight = link.request("sleep:3000:b", { idempotent: true, timeoutMs: 20_000 });
    await sleep(300);
    process.kill(first, "SIGKILL");
    const again = pidOf(await inFlight);
    assert.notEqual(again, first, "sent again on a new session, served by the other service process");
    for (let i = 0; i < 10; i++) assert.equal(pidOf(await link.request(`sleep:0:${i}`)), again);
  } finally {
    await client.close();
  }
});

test("a service process that keeps crashing is restarted with growing delays, then reported as a crash loop and left stopped", async (t) => {
  if (nodeOnly(t)) return;
  const g = await serveGroup(["--app", CRASHING_APP, "--workers", "2"], { CRASH_SLOT: "0", CRASH_AFTER_MS: "300" });
  await waitFor(() => g.log().includes('"worker_crash_loop"'), "the crash loop verdict", 60_000);
  const delays = [...g.log().matchAll(/"event":"worker_restarting","slot":0,"delayMs":(\d+)/g)].map((m) => Number(m[1]));
  assert.deepEqual(delays, [100, 200, 400, 800], "exponential backoff between restarts");
  const st = await g.status();
  const failed = st.workers.find((w) => w.slot === 0)!;
  assert.equal(failed.state, "failed");
  assert.equal(failed.pid, null);
  assert.equal(failed.restarts, 4);
  await sleep(1000);
  assert.equal([...g.log().matchAll(/"event":"worker_restarting","slot":0/g)].length, 4, "not restarted any more");
  // The healthy one serves everything.
  const pids = await sessionPids(g.port, 4, 3);
  assert.deepEqual([...new Set(pids)], [st.workers.find((w) => w.slot === 1)!.pid]);
  const text = await runCli(["status", "--state-dir", g.stateDir]);
  assert.match(text.stdout, /#0 pid - {2}failed .* restarts 4/);
});

test("--workers 1..3 adds service processes while every slot is busy and retires idle ones", async (t) => {
  if (nodeOnly(t)) return;
  const config = path.join(tempDir(), "perilink.json");
  // A connection waits for a slot up to handshakeTimeoutMs: long enough here for a service process started under tsx on a loaded machine.
  await fs.writeFile(config, JSON.stringify({ workers: "1..3", workerSlots: 2, workerIdleMs: 500, limits: { handshakeTimeoutMs: 20_000 } }));
  const g = await serveGroup(["--config", config, "--app", CRASHING_APP]);
  assert.equal((await g.status()).workers.length, 1);
  const sessions: ClientSession[] = [];
  for (let i = 0; i < 5; i++) {
    const s = await ClientSession.connect({ host: "127.0.0.1", port: g.port, timeoutMs: 25_000 });
    sessions.push(s);
    await (await s.openChannel("x")).request("hello");
  }
  const busy = await g.status();
  assert.equal(busy.workers.filter((w) => w.state === "ready").length, 3, "two service processes were added");
  assert.deepEqual(busy.workers.map((w) => w.connections).sort(), [1, 2, 2]);
  assert.equal((g.log().match(/"worker_added"/g) ?? []).length, 2);
  for (const s of sessions) s.destroy();
  await waitFor(async () => (await g.status()).workers.length === 1, "idle service processes to be retired", 10_000);
  assert.equal((g.log().match(/"worker_retired"/g) ?? []).length, 2);
  // The one left still serves.
  const pids = await sessionPids(g.port, 2, 2);
  assert.equal(new Set(pids).size, 1);
});

test("status shows the dispatch mode and every service process, in JSON and as text", async (t) => {
  if (nodeOnly(t)) return;
  const g = await serveGroup(["--app", HTTP_APP, "--workers", "2", "--dispatch", "semaphore"]);
  await httpPids(g.port, 10, 2);
  await waitFor(async () => (await g.status()).counters.requests === 10, "the requests to be counted", 5000);
  const json = await runCli(["status", "--state-dir", g.stateDir, "--json"]);
  const s = JSON.parse(json.stdout) as { dispatch: string; workers: Record<string, unknown>[] };
  assert.equal(s.dispatch, "semaphore");
  for (const w of s.workers) {
    for (const k of ["pid", "sessions", "inflight", "requests", "restarts"]) assert.equal(typeof w[k], "number", `${k} in ${JSON.stringify(w)}`);
  }
  const text = await runCli(["status", "--state-dir", g.stateDir]);
  assert.match(text.stdout, /workers {4}2 service processes, semaphore dispatch:/);
  assert.match(text.stdout, /#0 pid \d+ {2}ready {2}sessions 0 {2}in flight 0 {2}requests \d+ {2}connections \d+ {2}restarts 0/);
});

test("a single process (workers 1) has no manager: status says dispatch single and lists no workers", async () => {
  const { testServer } = await import("../helpers/fixtures.ts");
  const server = await testServer();
  const s = server.status();
  assert.equal(s.dispatch, "single");
  assert.deepEqual(s.workers, []);
});

test("on a runtime that cannot pass sockets (Deno), --workers 2 is refused with a ConfigError that says why", async (t) => {
  if (detectRuntime().canInheritSockets) {
    t.skip("Node.js passes sockets: service processes work here");
    return;
  }
  const r = await runCli(["serve", "--state-dir", tempDir(), "--listen", "127.0.0.1:0", "--workers", "2"], { timeoutMs: 30_000 });
  assert.equal(r.code, 78, "EX_CONFIG: the service unit does not restart on it");
  assert.match(r.stderr, /Cannot start 2 service processes: deno cannot pass a connection or a listening socket to another process; use "workers": 1 .*\[PERILINK_CONFIG\]/);
});
