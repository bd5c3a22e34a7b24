import assert from "node:assert/strict";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { REPO_ROOT, spawnCli } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/free_port.ts";

/** Starts `perilink serve` with `app` and a 500 ms drain deadline, stops it with SIGTERM: how long it took to exit, its code and its log. */
async function serveAndStop(app: string): Promise<{ ms: number; code: number | null; log: string }> {
  const dir = tempDir();
  const config = path.join(dir, "perilink.json");
  writeFileSync(config, JSON.stringify({ listen: [`127.0.0.1:${await freePort()}`], app, access: "open", drainTimeoutMs: 500 }));
  const child = spawnCli(["serve", "--config", config, "--state-dir", path.join(dir, "state"), "--log-format", "json"]);
  let log = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (log += s));
  const started = Date.now();
  while (!log.includes('"server_started"')) {
    assert.ok(Date.now() - started < 20_000 && child.exitCode === null, `serve did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const t = performance.now();
  const exited = once(child, "exit");
  process.kill(child.pid!, "SIGTERM"); // not child.kill(): Deno's child_process then reports the signal, not the exit code
  const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  const [code, signal] = (await exited) as [number | null, string | null];
  log += `\nexit: code ${code} signal ${signal}\n`;
  clearTimeout(killer);
  return { ms: performance.now() - t, code, log };
}

test("serve exits soon after the drain deadline although the app left a drain() hook, a timer and a server of its own running", async () => {
  const { ms, code, log } = await serveAndStop(path.join(REPO_ROOT, "test/fixtures/lingering_app.ts"));
  assert.equal(code, 0, log);
  assert.match(log, /"app_drain_timeout"/);
  assert.match(log, /"exit_forced"/, "it says it exited without what the app left running");
  assert.ok(ms < 5000, `exited ${ms.toFixed(0)} ms after SIGTERM (drain deadline 500 ms, then 1 s of grace)`);
});

test("an app that leaves nothing running exits by itself after its drain, without a forced exit", async () => {
  const { code, log } = await serveAndStop("demo");
  assert.equal(code, 0, log);
  assert.match(log, /"drain_finished"/);
  assert.doesNotMatch(log, /"exit_forced"/);
});
