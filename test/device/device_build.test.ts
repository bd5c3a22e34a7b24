import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import { test } from "node:test";
import { bundleFor, nodeBin } from "./bundles.ts";

function runBundle(bundle: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(nodeBin(), [bundle, ...args], { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

test("the device build (pi-zero-2w) measures no lines: none of the measuring code is in it, and call --prefer is a usage error", async () => {
  const device = await fs.readFile(await bundleFor("pi-zero-2w"), "utf8");
  const host = await fs.readFile(await bundleFor("node20"), "utf8");
  for (const mark of ["client_line_review_failed", "qdisc"]) {
    assert.ok(host.includes(mark), `the host build measures lines (${mark})`);
    assert.ok(!device.includes(mark), `the device build does not (${mark})`);
  }
  const r = await runBundle(await bundleFor("pi-zero-2w"), ["call", "127.0.0.1:9", "--prefer", "rtt=1"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Cannot use --prefer: the pi-zero-2w build measures no lines.*\[PERILINK_USAGE\]/);
});

test("the device build resolves names through the system resolver only: no multicast or NetBIOS name source in it, another source is a usage error", async () => {
  const device = await fs.readFile(await bundleFor("pi-zero-2w"), "utf8");
  const host = await fs.readFile(await bundleFor("node20"), "utf8");
  // The mDNS groups are in both: the device advertises itself (DNS-SD); the name sources' reverse
  // lookups and the LLMNR and NetBIOS sources are the hosts' alone.
  for (const mark of ["in-addr.arpa", "224.0.0.252", "ff02::1:3"]) {
    assert.ok(host.includes(mark), `the host build has every name source (${mark})`);
    assert.ok(!device.includes(mark), `the device build does not (${mark})`);
  }
  for (const args of [["--resolve", "hosts,mdns"], ["--name-server", "127.0.0.1"]]) {
    const r = await runBundle(await bundleFor("pi-zero-2w"), ["call", "printer.test:9", ...args]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /the pi-zero-2w build resolves names through the system resolver only.*\[PERILINK_USAGE\]/);
  }
  const byHosts = await runBundle(await bundleFor("pi-zero-2w"), ["call", "localhost:9", "--timeout", "500"]);
  assert.doesNotMatch(byHosts.stderr, /PERILINK_USAGE|PERILINK_CONFIG|PERILINK_NAME_NOT_FOUND/, "localhost resolves through the system resolver");
});
