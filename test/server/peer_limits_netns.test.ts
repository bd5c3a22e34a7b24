/**
 * Per-peer limits key IPv6 peers by /64: two addresses of one /64 are one
 * peer for `maxSessionsPerPeer` and for the probe rate, an address of
 * another /64 is another peer. ::1 alone cannot show this, so a child runs
 * in a network namespace of its own whose loopback holds a per-run
 * fd77:XXXX::/64 and one address of the next /64; all traffic stays on that
 * loopback. Needs root and `ip netns`; skips otherwise. The namespace is
 * removed in `after()`.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { after, test } from "node:test";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { REPO_ROOT } from "../helpers/cli.ts";

const NS = `plkpeer${process.pid.toString(36)}${randomBytes(2).toString("hex")}`;
const NET = `fd77:${(randomBytes(2).readUInt16BE(0) | 0x1000).toString(16)}`;
const SERVER = `${NET}::1`;
const SAME_A = `${NET}::a`;
const SAME_B = `${NET}::b`;
const OTHER = `${NET}:0:1::a`;
const PROBE_BURST = 5;
const PROBES_PER_SOURCE = 10;
const CHILD = path.join(REPO_ROOT, "test/fixtures/peer_limits_child.ts");

let nsCreated = false;

function run(cmd: string, args: string[], timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: "SIGKILL" }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")}: ${String(stderr).trim() || err.message}`, { cause: err }));
      else resolve(String(stdout));
    });
  });
}

after(async () => {
  if (nsCreated) await run("ip", ["netns", "del", NS]).catch((err: Error) => console.error(`cleanup: ${err.message}`));
  nsCreated = false;
});
process.once("exit", () => {
  if (nsCreated) spawnSync("ip", ["netns", "del", NS], { timeout: 5000, stdio: "ignore" });
});

/** Creates the namespace; the reason to skip, or null. */
async function setup(): Promise<string | null> {
  if (process.platform !== "linux" || typeof process.getuid !== "function" || process.getuid() !== 0) return "needs root on Linux";
  try {
    await run("ip", ["netns", "add", NS]);
  } catch (err) {
    return `needs ip netns: ${(err as Error).message}`;
  }
  nsCreated = true;
  await run("ip", ["-n", NS, "link", "set", "lo", "up"]);
  for (const a of [SERVER, SAME_A, SAME_B, OTHER]) await run("ip", ["-n", NS, "-6", "addr", "add", `${a}/64`, "dev", "lo", "nodad"]);
  return null;
}

test("two addresses of one IPv6 /64 are one peer for maxSessionsPerPeer and the probe rate; another /64 is another peer", async (t) => {
  const skip = await setup();
  if (skip) {
    t.skip(skip);
    return;
  }
  const runtime = detectRuntime().name === "deno" ? ["run", "-A", CHILD] : ["--import", "tsx", CHILD];
  const out = await run("ip", ["netns", "exec", NS, process.execPath, ...runtime, SERVER, String(PROBE_BURST), String(PROBES_PER_SOURCE), SAME_A, SAME_B, OTHER], 60_000);
  const r = JSON.parse(out.trim().split("\n").at(-1)!) as Record<string, { session: string; probeAnswers: number }>;
  console.log(JSON.stringify(r));
  assert.equal(r[SAME_A]?.session, "admitted");
  assert.equal(r[SAME_B]?.session, "busy", `${SAME_B} shares ${SAME_A}'s /64, which already has its one session`);
  assert.equal(r[OTHER]?.session, "admitted", `${OTHER} is in another /64`);
  const sameAnswers = r[SAME_A]!.probeAnswers + r[SAME_B]!.probeAnswers;
  assert.ok(r[SAME_A]!.probeAnswers >= PROBE_BURST - 1, `the first source gets its burst (${r[SAME_A]!.probeAnswers})`);
  assert.ok(sameAnswers <= PROBE_BURST + 1, `one /64 shares one burst of ${PROBE_BURST}: ${sameAnswers} answers to ${2 * PROBES_PER_SOURCE} probes`);
  assert.ok(r[OTHER]!.probeAnswers >= PROBE_BURST - 1, `another /64 has its own burst (${r[OTHER]!.probeAnswers})`);
});
