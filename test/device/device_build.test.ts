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

test("the device build (pi-zero-2w) measures no lines: none of the measuring code is in it, and call --prefer is refused with PERILINK_CONFIG", async () => {
  const device = await fs.readFile(await bundleFor("pi-zero-2w"), "utf8");
  const host = await fs.readFile(await bundleFor("node20"), "utf8");
  for (const mark of ["client_line_review_failed", "qdisc"]) {
    assert.ok(host.includes(mark), `the host build measures lines (${mark})`);
    assert.ok(!device.includes(mark), `the device build does not (${mark})`);
  }
  const r = await runBundle(await bundleFor("pi-zero-2w"), ["call", "127.0.0.1:9", "--prefer", "rtt=1"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /Cannot use --prefer: the pi-zero-2w build measures no lines.*\[PERILINK_CONFIG\]/);
});
