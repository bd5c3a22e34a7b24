import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { REPO_ROOT, spawnCli } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/free_port.ts";

/** Starts `perilink serve` with `app` and a 500 ms drain deadline, stops it with SIGTERM: how long it took to exit, its code and its log. */
async function serveAndStop(app: string): Promise<{ ms: number; code: number | null; log: string }> {
  const { child, log: logOf } = await serve(app);
  const t = performance.now();
  const exited = once(child, "exit");
  process.kill(child.pid!, "SIGTERM"); // not child.kill(): Deno's child_process then reports the signal, not the exit code
  const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  const [code, signal] = (await exited) as [number | null, string | null];
  clearTimeout(killer);
  return { ms: performance.now() - t, code, log: `${logOf()}\nexit: code ${code} signal ${signal}\n` };
}

/** `perilink serve` with `app` (and `env`) and a 500 ms drain deadline, once it started (or exited). */
async function serve(app: string, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; log: () => string }> {
  const dir = tempDir();
  const config = path.join(dir, "perilink.json");
  writeFileSync(config, JSON.stringify({ listen: [`127.0.0.1:${await freePort()}`], app, access: "open", drainTimeoutMs: 500 }));
  const child = spawnCli(["serve", "--config", config, "--state-dir", path.join(dir, "state"), "--log-format", "json"], { env: { ...process.env, ...env } });
  let log = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (log += s));
  const started = Date.now();
  while (!log.includes('"server_started"') && child.exitCode === null) {
    assert.ok(Date.now() - started < 20_000, `serve did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, log: () => log };
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

test("serve exits soon after it failed to start, although the app left a server of its own running", async () => {
  const t = performance.now();
  const { child, log } = await serve(path.join(REPO_ROOT, "test/fixtures/lingering_app.ts"), { LINGERING_APP_NOT_READY: "1" });
  const killer = setTimeout(() => child.kill("SIGKILL"), 15_000); // still there: the assertion below says so
  const [code] = child.exitCode !== null ? [child.exitCode] : ((await once(child, "exit")) as [number | null]);
  clearTimeout(killer);
  assert.equal(code, 1, log());
  assert.match(log(), /PERILINK_APP_NOT_READY/);
  const ms = performance.now() - t;
  assert.ok(ms < 15_000, `exited ${ms.toFixed(0)} ms after it started`);
});
