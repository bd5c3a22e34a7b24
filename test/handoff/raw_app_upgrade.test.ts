/**
 * Upgrade hooks in raw mode (docs/apps.md, "Upgrades"): a node:http app with
 * ready()/drain() and a handoff, served by the real CLI and upgraded under
 * keep-alive-free HTTP load (test/fixtures/raw_hooks_app.ts).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, test } from "node:test";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { controlRequest } from "../../src/server/control_server.ts";
import type { ServerStatus } from "../../src/server/server.ts";
import { REPO_ROOT, runCli, spawnCli, stopChild } from "../helpers/cli.ts";
import { sleep, tempDir, waitFor } from "../helpers/fixtures.ts";
import { httpLoad } from "../helpers/load.ts";
import { pidAlive, pidsKilledAfterFile } from "../helpers/pid_alive.ts";

const APP = path.join(REPO_ROOT, "test/fixtures/raw_hooks_app.ts");
const SKIP = detectRuntime().handoff === "inherit" ? null : "Deno cannot pass descriptors to a new process (an upgrade there binds the ports again with SO_REUSEPORT)";
const seen = pidsKilledAfterFile();

function get(port: number): Promise<{ pid: number; received: { from: number; served: number } | null; inherited: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/", agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (s: string) => (body += s));
      res.on("end", () => resolve(JSON.parse(body)));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

test("a raw-mode app's hooks take part in a real upgrade: the new ready() gets the state and the very open file, the old drain() runs handed over, 0 requests fail", async (t) => {
  if (SKIP) return t.skip(SKIP);
  const dir = tempDir("perilink-raw-hooks-");
  const logFile = path.join(dir, "hooks.log");
  const shared = path.join(dir, "shared.txt");
  const stateDir = path.join(dir, "state");
  const child = spawnCli(["serve", "--listen", "127.0.0.1:0", "--app", APP, "--access", "open", "--state-dir", stateDir, "--log-format", "json"], {
    env: { ...process.env, RAW_HOOKS_LOG: logFile, RAW_HOOKS_FILE: shared },
  });
  seen.add(child.pid!);
  after(() => stopChild(child, 2000));
  let log = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (log += s));
  child.stdout!.resume();
  await waitFor(() => log.includes('"server_started"') || child.exitCode !== null, "the server to start", 30_000);
  assert.equal(child.exitCode, null, log);
  const status = async (): Promise<ServerStatus> => (await controlRequest(stateDir, { op: "status" }, 3000)) as ServerStatus;
  const port = (await status()).listeners.find((l) => l.transport === "tcp")!.port;

  const first = await get(port);
  assert.equal(first.received, null);
  assert.equal(first.inherited, false);
  const load = httpLoad("127.0.0.1", port, 8, { maxMs: 60_000 });
  await sleep(300);
  const r = await runCli(["upgrade", "--state-dir", stateDir, "--timeout", "15000", "--json"], { timeoutMs: 40_000 });
  assert.equal(r.code, 0, `${r.stderr}\n${log}`);
  let second = await get(port);
  for (let i = 0; i < 50 && second.pid === first.pid; i++) second = await get(port); // connections already queued to the old one
  seen.add(second.pid);
  assert.notEqual(second.pid, first.pid, "the new generation answers");
  await waitFor(() => !pidAlive(first.pid), "the old generation to drain and exit", 15_000);
  const report = await load.stop();
  assert.deepEqual(report.errors.slice(0, 5), [], `${report.errors.length} errors`);
  assert.equal(report.non2xx, 0);
  assert.ok(report.ok > 20, `the load ran (${report.ok})`);

  assert.equal(second.received?.from, first.pid, "the state the old generation put");
  assert.ok((second.received?.served ?? 0) > 0, "as it stood once the old one had served requests");
  assert.equal(second.inherited, true, "the file came from the old generation");
  const hooks = readFileSync(logFile, "utf8").trim().split("\n");
  assert.deepEqual(hooks[0], `ready inherited=false state=null pid=${first.pid}`);
  assert.ok(hooks.some((l) => l.startsWith(`ready inherited=true state={"from":${first.pid},`) && l.endsWith(`pid=${second.pid}`)), hooks.join("\n"));
  assert.ok(hooks.includes(`drain handedOver=true pid=${first.pid}`), hooks.join("\n"));
  assert.deepEqual(readFileSync(shared, "utf8").trim().split("\n"), [`written by ${first.pid}`, `written by ${second.pid}`]);
  t.diagnostic(`${report.ok} HTTP responses, 0 errors; state ${JSON.stringify(second.received)}`);
  process.kill(second.pid, "SIGTERM");
  await waitFor(() => !pidAlive(second.pid), "the new generation to stop", 10_000);
  assert.ok(readFileSync(logFile, "utf8").includes(`drain handedOver=false pid=${second.pid}`), "a stop's drain() is told it was not handed over");
});
