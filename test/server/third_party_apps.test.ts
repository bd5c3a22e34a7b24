import assert from "node:assert/strict";
import http from "node:http";
import path from "node:path";
import { after, test } from "node:test";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { controlRequest } from "../../src/server/control_server.ts";
import type { ServerStatus } from "../../src/server/server.ts";
import { REPO_ROOT, runCli, spawnCli, stopChild } from "../helpers/cli.ts";
import { tempDir, waitFor } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/free_port.ts";
import { keepAliveLoad, type KeepAliveRecord } from "../helpers/load.ts";
import { pidAlive, pidsKilledAfterFile, stopPidAfter } from "../helpers/pid_alive.ts";

/**
 * Raw mode with real Express 5 and Fastify 5 apps (test/fixtures/*_app.ts),
 * served by the CLI: an upgrade under keep-alive load, and an app that
 * calls listen() itself.
 */

const APPS = {
  Express: path.join(REPO_ROOT, "test/fixtures/express_app.ts"),
  Fastify: path.join(REPO_ROOT, "test/fixtures/fastify_app.ts"),
};

/** A stream started before the upgrade, long enough to be under way when the old process begins to drain. */
const LONG_STREAM = "/stream?chunks=150&every=100"; // 15 s: under way when the drain begins even when the upgrade command is slow to start

/** Every pid a test saw serving, killed after the file (an upgrade's new process is not our child). */
const pids = pidsKilledAfterFile();

/** What each route of the fixtures answers. */
function expectedBody(p: string): string {
  if (p.startsWith("/sync")) return "sync ok";
  if (p.startsWith("/async")) return "async ok";
  const chunks = Number(new URL(p, "http://x").searchParams.get("chunks") ?? 5);
  return `${Array.from({ length: chunks }, (_, i) => `chunk ${i}\n`).join("")}end\n`;
}

/** True when the test must skip: the runtime keeps no keep-alive connection in raw mode for an upgrade to move. */
function noKeepAlive(t: { skip(message?: string): void }): boolean {
  if (detectRuntime().keepsHandedHttpConnections) return false;
  // Skipped from the body: on Deno the `skip` option keeps after() hooks from running.
  t.skip(`raw mode says Connection: close to every response on ${detectRuntime().name} (its node:http ends a handed connection after each one): there is no keep-alive connection for an upgrade to move`);
  return true;
}

async function status(stateDir: string): Promise<ServerStatus> {
  const s = (await controlRequest(stateDir, { op: "status" })) as ServerStatus;
  pids.add(s.pid);
  return s;
}

/** `perilink serve --app APP` on 127.0.0.1, ready when it logged server_started. */
async function serve(app: string): Promise<{ stateDir: string; port: number; log: () => string; exited: Promise<number | null> }> {
  const stateDir = tempDir();
  const port = await freePort();
  const child = spawnCli(["serve", "--access", "open", "--state-dir", stateDir, "--listen", `127.0.0.1:${port}`, "--app", app]);
  let log = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (log += s));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  after(() => stopChild(child));
  await waitFor(() => log.includes('"server_started"') || child.exitCode !== null, "the server to start", 30_000);
  assert.equal(child.exitCode, null, log);
  pids.add(child.pid!);
  return { stateDir, port, log: () => log, exited };
}

/** The log lines of process `pid` with event `event`. */
function events(log: string, pid: number, event: string): Record<string, unknown>[] {
  return log
    .split("\n")
    .filter((l) => l.startsWith("{") && l.includes(`"${event}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r.event === event && r.pid === pid);
}

/** One GET on `agent`, with the time its head arrived. */
function timedGet(port: number, p: string, agent: http.Agent): Promise<KeepAliveRecord & { headAt: number }> {
  return new Promise((resolve, reject) => {
    const sentAt = Date.now();
    http
      .get({ host: "127.0.0.1", port, path: p, agent, timeout: 30_000 }, (res) => {
        const headAt = Date.now();
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ client: -1, path: p, sentAt, headAt, endedAt: Date.now(), headers: res.headers, socket: 0, body }));
        res.on("error", reject);
      })
      .on("error", reject);
  });
}


/** Two clients on each route: whatever a handler's shape, some response of it has its head sent after the drain began. */
const ROUTES = ["/sync", "/async", "/stream"];
const CLIENTS = 2 * ROUTES.length;

for (const [name, app] of Object.entries(APPS)) {
  test(`${name} in raw mode: through an upgrade under keep-alive load no request fails, every response whose head is sent after the drain began says Connection: close, a stream under way completes whole, and the old process exits at once`, async (t) => {
    if (noKeepAlive(t)) return;
    const srv = await serve(app);
    const old = await status(srv.stateDir);
    const oldPid = String(old.pid);
    const load = keepAliveLoad("127.0.0.1", srv.port, { clients: CLIENTS, path: (c) => ROUTES[c % ROUTES.length]!, expect: expectedBody, pauseMs: 5, maxMs: 60_000, maxRequests: 15_000 });
    after(() => load.stop());
    await waitFor(() => load.records.length >= 60, "the load's first responses", 10_000);
    // Its connection stays open after the stream: the draining process closes it once idle.
    const longAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    after(() => longAgent.destroy());
    const long = timedGet(srv.port, LONG_STREAM, longAgent);
    const up = await runCli(["upgrade", "--state-dir", srv.stateDir, "--json", "--timeout", "20000"], { timeoutMs: 30_000 });
    assert.equal(up.code, 0, `upgrade failed: ${up.stderr}`);
    const newPid = String((JSON.parse(up.stdout) as { pid: number }).pid);
    pids.add(Number(newPid));
    await stopPidAfter(Number(newPid), async () => {
      await waitFor(() => events(srv.log(), old.pid, "drain_started").length > 0, "the old process to log drain_started", 10_000);
      // Log times have millisecond resolution: a head stamped in a later millisecond went out from a draining server.
      const drainAt = Date.parse(String(events(srv.log(), old.pid, "drain_started")[0]!.time));
      const streamed = await long;
      await waitFor(() => !pidAlive(old.pid), "the old process to exit", 15_000);
      const goneAt = Date.now();
      const seen = load.records.length;
      await waitFor(() => load.records.length >= seen + 60, "more responses, from the new process", 10_000);
      await load.stop();

      assert.deepEqual(load.errors, [], `${load.errors.length} of ${load.records.length + load.errors.length} requests failed`);
      const onOld = load.records.filter((r) => r.headers["x-pid"] === oldPid);
      const headAt = (r: KeepAliveRecord): number => Number(r.headers["x-head-at"]);
      const late = onOld.filter((r) => headAt(r) > drainAt);
      assert.deepEqual(late.filter((r) => r.headers.connection !== "close").map((r) => `${r.path} on connection ${r.socket}: Connection: ${r.headers.connection}`), [], "every response whose head went out after the drain began says Connection: close");
      // Each client had its connection open to the old process when the drain began: the next head it
      // got from there said Connection: close (in the drain's millisecond or later), and it moved.
      for (let c = 0; c < CLIENTS; c++) {
        const mine = load.records.filter((r) => r.client === c);
        const told = mine
          .filter((r) => r.endedAt > drainAt - 200 && r.sentAt < drainAt + 200)
          .map((r) => `${r.headers["x-pid"] === oldPid ? "old" : "new"} conn ${r.socket} sent ${r.sentAt - drainAt} head ${headAt(r) - drainAt} end ${r.endedAt - drainAt} ${r.headers.connection}`);
        const closes = mine.filter((r) => r.headers["x-pid"] === oldPid && r.headers.connection === "close");
        const why = `client ${c} (${ROUTES[c % ROUTES.length]}) around the drain, ms from it:\n${told.join("\n")}`;
        assert.equal(closes.length, 1, `one Connection: close from the old process; ${why}`);
        assert.ok(headAt(closes[0]!) >= drainAt, `only once the drain began; ${why}`);
        assert.equal(onOld.filter((r) => r.client === c).at(-1), closes[0], `and it was the last response from there; ${why}`);
        assert.equal(mine.at(-1)?.headers["x-pid"], newPid, `it moved to the new process; ${why}`);
      }
      for (const route of ROUTES) t.diagnostic(`${route}: ${late.filter((r) => r.path === route).length} responses with their head sent after the drain began, all with Connection: close`);
      assert.ok(load.records.some((r) => r.headers["x-pid"] === newPid && r.headers.connection === "keep-alive"), "the new process keeps its connections alive");

      assert.equal(streamed.body, expectedBody(LONG_STREAM), "the stream under way completed whole");
      assert.equal(streamed.headers["x-pid"], oldPid);
      assert.ok(streamed.headAt < drainAt && streamed.endedAt > drainAt, `the stream was under way when the drain began (head ${streamed.headAt - drainAt} ms, end ${streamed.endedAt - drainAt} ms from it)`);
      assert.equal(await srv.exited, 0, "the old process exited with 0");
      assert.deepEqual(events(srv.log(), old.pid, "drain_deadline"), [], "nothing was left for the drain deadline");
      if (name === "Fastify") assert.ok(srv.log().includes(`fastify onClose ${old.pid}\n`), "Fastify's onClose hooks ran at the end of the drain");
      assert.equal(streamed.headers.connection, "keep-alive", "the stream's head went out before the drain");
      assert.ok(goneAt - streamed.endedAt < 4000, `the old process exited ${goneAt - streamed.endedAt} ms after the stream ended (it closes a keep-alive connection idle for a second)`);
      t.diagnostic(`${load.records.length} responses; drain began ${drainAt - streamed.headAt} ms into the long stream; old process gone ${goneAt - drainAt} ms after the drain began, ${goneAt - streamed.endedAt} ms after the stream ended`);
    });
  });
}

for (const [name, app] of Object.entries(APPS)) {
  for (const host of ["127.0.0.1", "localhost"]) {
    test(`${name} app that calls listen() itself (on ${host}) is refused at load with PERILINK_APP, and the process exits`, async () => {
      const stateDir = tempDir();
      const port = await freePort();
      const t0 = Date.now();
      const r = await runCli(["serve", "--access", "open", "--state-dir", stateDir, "--listen", `127.0.0.1:${port}`, "--app", app], {
        env: { ...process.env, APP_LISTENS: host },
        timeoutMs: 20_000,
      });
      const ms = Date.now() - t0;
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /Cannot load app .*: the server createServer\(\) returned listens already \(it called listen\(\) itself\).*\[PERILINK_APP\]/);
      assert.doesNotMatch(r.stderr, /"server_started"/);
      assert.ok(ms < 15_000, `exited after ${ms} ms`);
    });
  }
}
