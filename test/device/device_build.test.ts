import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { bundleFor, nodeBin } from "./bundles.ts";

function runBundle(bundle: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(nodeBin(), [bundle, ...args], { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

test("the device build (pi-zero-2w) serves and has no client: the session table, name sources, line review and agent are the host builds' alone", async () => {
  const device = await fs.readFile(await bundleFor("pi-zero-2w"), "utf8");
  const host = await fs.readFile(await bundleFor("node20"), "utf8");
  // The mDNS groups are in both (the device advertises itself with DNS-SD); these are the client's.
  const marks = {
    "the line review": "client_line_review_failed",
    "the line measures": "qdisc",
    "reverse name lookups": "in-addr.arpa",
    "LLMNR": "224.0.0.252",
    "the known-servers record": "PERILINK_SERVER_CHANGED",
    "the session table's failover": "failover",
    "the host agent": "agent.sock",
  };
  for (const [what, mark] of Object.entries(marks)) {
    assert.ok(host.includes(mark), `the host build has ${what} (${mark})`);
    assert.ok(!device.includes(mark), `the device build does not have ${what} (${mark})`);
  }
});

test("the host commands in the device build exit 78 and say which build runs them", async () => {
  const device = await bundleFor("pi-zero-2w");
  const cases: [string[], string][] = [
    [["call", "127.0.0.1:9"], "call"],
    [["id", "127.0.0.1:9", "--tcp"], "id --tcp"],
    [["pair", "127.0.0.1:9", "ABCD-EFGH-JKLM-NPQR"], "pair HOST:PORT CODE"],
    [["key"], "key"],
    [["browse"], "browse"],
    [["forget", "printer.local"], "forget"],
    [["agent"], "agent"],
    [["sessions"], "sessions"],
  ];
  for (const [args, what] of cases) {
    const r = await runBundle(device, args);
    assert.equal(r.code, 78, `${args.join(" ")}: ${r.stderr}`);
    assert.ok(
      r.stderr.includes(`Cannot run "perilink ${what}": the pi-zero-2w build serves devices and has no client; run it from a host build (PERILINK_TARGET=node20`),
      `${args.join(" ")}: ${r.stderr}`,
    );
    assert.match(r.stderr, /\[PERILINK_CONFIG\]/);
  }
});

test("perilink help in the device build lists the commands it runs and says where the host commands are", async () => {
  const device = await runBundle(await bundleFor("pi-zero-2w"), ["help"]);
  const host = await runBundle(await bundleFor("node20"), ["help"]);
  assert.equal(device.code, 0);
  for (const cmd of ["serve", "id", "trust", "pair", "status", "metrics", "upgrade"]) assert.match(device.stdout, new RegExp(`^  perilink ${cmd}\\b`, "m"), cmd);
  for (const cmd of ["call", "key", "browse", "forget", "agent", "sessions"]) {
    assert.doesNotMatch(device.stdout, new RegExp(`^  perilink ${cmd}\\b`, "m"), `the device lists no ${cmd}`);
    assert.match(host.stdout, new RegExp(`^  perilink ${cmd}\\b`, "m"), `the host lists ${cmd}`);
  }
  assert.match(device.stdout, /perilink id +HOST:PORT \[--json\]/);
  assert.match(host.stdout, /perilink id +HOST:PORT \[--tcp\]/);
  assert.match(device.stdout, /This build \(pi-zero-2w\) serves devices; the host commands \(call, id --tcp, pair HOST:PORT\nCODE, key, browse, forget, agent, sessions\) are in the host builds \(PERILINK_TARGET=node20\)/);
  assert.doesNotMatch(host.stdout, /This build .* serves devices/);
  // Help for a host command there: the whole usage, which says where it is (as `call --help`).
  for (const args of [["help", "call"], ["call", "--help"], ["agent", "upgrade", "--help"]]) {
    const r = await runBundle(await bundleFor("pi-zero-2w"), args);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stdout, /This build \(pi-zero-2w\) serves devices/, args.join(" "));
  }
});

test("the device build's pair offers a code and its id probes over UDP", async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "perilink-device-"));
  try {
    const device = await bundleFor("pi-zero-2w");
    const offer = await runBundle(device, ["pair", "--json", "--state-dir", dir]);
    assert.equal(offer.code, 0, offer.stderr);
    assert.match(JSON.parse(offer.stdout).code, /^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$/);
    const id = await runBundle(device, ["id", "127.0.0.1:9", "--timeout", "300"]);
    assert.equal(id.code, 1);
    assert.match(id.stderr, /no UDP answer in 300 ms.*\[PERILINK_PROBE_TIMEOUT\]/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
