import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, test } from "node:test";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { runCli, spawnCli, stopChild } from "../helpers/cli.ts";
import { tempDir, waitFor } from "../helpers/fixtures.ts";

/** Starts `perilink serve` and waits until its control socket answers; stopped after the file. */
async function serve(args: string[]): Promise<{ stateDir: string; stderr: () => string; stop: () => Promise<void> }> {
  const stateDir = tempDir();
  const child = spawnCli(["serve", "--access", "open", "--state-dir", stateDir, ...args]);
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  after(() => stopChild(child));
  await waitFor(() => err.includes('"server_started"') || child.exitCode !== null, "the server to start", 20000);
  assert.equal(child.exitCode, null, `serve exited early: ${err}`);
  return {
    stateDir,
    stderr: () => err,
    stop: async () => {
      await stopChild(child);
      assert.match(err, /"drain_finished"/, "a signal makes serve drain");
      // Deno's child_process reports the signal it sent even when the child handled it and exited 0.
      if (detectRuntime().name === "node") assert.equal(child.exitCode, 0, "then exit 0");
    },
  };
}

test("serve, id and status work together; status --json has the documented fields", async () => {
  const srv = await serve(["--listen", "127.0.0.1:0", "--listen", "[::1]:0"]);
  const st = await runCli(["status", "--state-dir", srv.stateDir, "--json"]);
  assert.equal(st.code, 0, st.stderr);
  const status = JSON.parse(st.stdout);
  for (const k of ["pid", "generation", "serverId", "listeners", "sessions", "inflight", "accepting"]) assert.ok(k in status, k);
  assert.equal(status.generation, 1);
  assert.equal(status.accepting, true);
  assert.equal(status.listeners.length, 4);
  for (const l of status.listeners) {
    const host = l.address.includes(":") ? `[${l.address}]` : l.address;
    const r = await runCli(["id", `${host}:${l.port}`, "--json", ...(l.transport === "tcp" ? ["--tcp"] : [])]);
    assert.equal(r.code, 0, r.stderr);
    const id = JSON.parse(r.stdout);
    assert.equal(id.serverId, status.serverId);
    assert.equal(id.transport, l.transport);
    for (const k of ["keyFingerprint", "address", "port", "rttMs"]) assert.ok(k in id, k);
  }
  const human = await runCli(["status", "--state-dir", srv.stateDir]);
  assert.match(human.stdout, new RegExp(`server\\s+${status.serverId}`));
  for (const line of srv.stderr().trim().split("\n")) JSON.parse(line); // one JSON object per line
  await srv.stop();
});

test("status says clearly that no server runs in a state directory", async () => {
  const r = await runCli(["status", "--state-dir", tempDir()]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no perilink server is running there/);
  assert.equal(r.stderr.trim().split("\n").length, 1);
});

test("id exits 1 with a clear message when nothing answers", async () => {
  const r = await runCli(["id", "127.0.0.1:9", "--timeout", "300"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no UDP answer in 300 ms.*PERILINK_PROBE_TIMEOUT/);
});

test("serve exits with a one-line reason: 78 on a bad config or address, 1 on a port in use or a corrupt identity, 2 on an unknown option", async () => {
  const dir = tempDir();
  const cfg = path.join(dir, "bad.json");
  await fs.writeFile(cfg, JSON.stringify({ listen: ["127.0.0.1:0"], limits: { maxSesions: 1 } }));
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
  const busy = (blocker.address() as net.AddressInfo).port;
  const corrupt = tempDir();
  await fs.writeFile(path.join(corrupt, "identity.json"), "{}");
  const cases: [string[], RegExp, number][] = [
    [["--config", cfg], /unknown key "limits.maxSesions".*PERILINK_CONFIG/, 78],
    [["--listen", "printer.local:1025"], /not a numeric address/, 78],
    [["--listen", `127.0.0.1:${busy}`], /address in use.*PERILINK_ADDRESS_IN_USE/, 1],
    [["--listen", "127.0.0.1:0", "--bogus"], /Unknown option '--bogus'.*PERILINK_USAGE.*perilink serve --help/, 2],
  ];
  try {
    for (const [args, re, exit] of cases) {
      const r = await runCli(["serve", "--access", "open", "--state-dir", tempDir(), ...args]);
      assert.equal(r.code, exit, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split("\n").filter((l) => !l.startsWith("{")).length, 1, "one line of reason");
    }
    const r = await runCli(["serve", "--access", "open", "--state-dir", corrupt, "--listen", "127.0.0.1:0"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Cannot load identity .*PERILINK_IDENTITY/);
  } finally {
    blocker.close();
  }
});

test("a second server on the same state directory refuses to start", async () => {
  const srv = await serve(["--listen", "127.0.0.1:0"]);
  const r = await runCli(["serve", "--access", "open", "--state-dir", srv.stateDir, "--listen", "127.0.0.1:0"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /another perilink server is running/);
  assert.equal((await runCli(["status", "--state-dir", srv.stateDir])).code, 0, "the first one is untouched");
});

test("help: perilink help, help COMMAND, COMMAND --help and -h print usage on stdout and exit 0; no arguments, an unknown command or topic (a prototype name too) exit 2", async () => {
  const all = await runCli(["help"]);
  assert.equal(all.code, 0);
  assert.match(all.stdout, /^perilink \S+: a runtime/);
  assert.match(all.stdout, /Exit status: 0 done, 1 failed, 2 a usage error/);
  for (const cmd of ["serve", "id", "call", "key", "trust", "forget", "pair", "status", "upgrade"]) {
    for (const args of [["help", cmd], [cmd, "--help"], [cmd, "-h"]]) {
      const r = await runCli(args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^Usage:\\n  perilink ${cmd}\\b`), args.join(" "));
      assert.doesNotMatch(r.stdout + r.stderr, /Unknown option|parseArgs|ERR_PARSE_ARGS/, args.join(" "));
    }
  }
  const bare = await runCli([]);
  assert.equal(bare.code, 2);
  assert.match(bare.stderr, /^perilink \S+: a runtime/);
  assert.equal((await runCli(["nonsense"])).code, 2);
  assert.equal((await runCli(["help", "nonsense"])).code, 2);
  // Names an object has from its prototype are no commands (one ran Object's constructor and crashed).
  for (const args of [["constructor"], ["toString", "--help"], ["help", "__proto__"]]) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /unknown command|not a command/, args.join(" "));
  }
  const usage = await runCli(["call"]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /give at least one HOST:PORT \[PERILINK_USAGE\] \(usage: "perilink call --help"\)/);
});

test("status reports the program's version, its uptime, and how the last upgrade ended: a failed one in the old process, 'started this process' in the new one", async () => {
  const srv = await serve(["--listen", "127.0.0.1:0"]);
  const status = async (): Promise<Record<string, unknown> & { lastUpgrade: { outcome: string; generation: number; error?: string } | null; pid: number }> =>
    JSON.parse((await runCli(["status", "--state-dir", srv.stateDir, "--json"])).stdout);
  const first = await status();
  const { VERSION } = await import("../../src/version.ts");
  assert.equal(first.version, VERSION);
  assert.equal(first.lastUpgrade, null);
  const missing = await runCli(["upgrade", "--state-dir", srv.stateDir, "--app", path.join(tempDir(), "no-such-app.mjs"), "--timeout", "10000"]);
  assert.equal(missing.code, 1, missing.stderr);
  const failed = await status();
  assert.equal(failed.lastUpgrade?.outcome, "failed");
  assert.equal(failed.lastUpgrade?.generation, 2);
  assert.match(failed.lastUpgrade?.error ?? "", /\S/);
  const human = await runCli(["status", "--state-dir", srv.stateDir]);
  assert.match(human.stdout, new RegExp(`version    ${VERSION.replace(/\./g, "\\.")}  up \\d+ (s|min)`));
  assert.match(human.stdout, /upgrade    last: failed \(generation 2, /);
  const port = (first as unknown as { listeners: { port: number }[] }).listeners[0]!.port;
  for (let i = 0; i < 3; i++) assert.equal((await runCli(["call", `127.0.0.1:${port}`, "--state-dir", tempDir()])).code, 0);
  const counted = ((await status()) as unknown as { counters: Record<string, number> }).counters;
  assert.ok(counted.requests! >= 3);
  const ok = await runCli(["upgrade", "--state-dir", srv.stateDir, "--timeout", "20000"]);
  assert.equal(ok.code, 0, ok.stderr);
  const now = await status();
  const carried = (now as unknown as { counters: Record<string, number> }).counters;
  assert.ok(carried.requests! >= counted.requests!, `the new process continues the totals: ${carried.requests} requests after ${counted.requests}`);
  assert.ok(carried.sessionsAccepted! >= counted.sessionsAccepted!);
  assert.equal(carried.handoffs, 1, "one handoff");
  assert.equal(carried.sessionsOpen, 0, "levels are the new process's own");
  after(() => {
    try {
      process.kill(now.pid, "SIGTERM");
    } catch {
      // gone already
    }
  });
  assert.deepEqual([now.lastUpgrade?.outcome, now.lastUpgrade?.generation], ["started this process", 2]);
});
