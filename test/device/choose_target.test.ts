import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { chooseTarget } from "../../build/choose_target.mjs";
import { REPO_ROOT } from "../helpers/cli.ts";
import { nodeBin } from "./bundles.ts";

const GiB = 1024 ** 3;
const facts = (over: Partial<{ env: Record<string, string>; isDeno: boolean; arch: string; totalMemBytes: number; model: string }>) => ({
  env: {},
  isDeno: false,
  arch: "x64",
  totalMemBytes: 16 * GiB,
  model: "",
  ...over,
});

test("the npm package's perilink picks the device build on a Pi Zero 2 W or 3, or a small ARM machine; node20 elsewhere; PERILINK_TARGET decides when set", () => {
  assert.equal(chooseTarget(facts({ arch: "arm64", totalMemBytes: 0.4 * GiB, model: "Raspberry Pi Zero 2 W Rev 1.0" })), "pi-zero-2w");
  assert.equal(chooseTarget(facts({ arch: "arm", totalMemBytes: 0.9 * GiB, model: "Raspberry Pi 3 Model B Plus Rev 1.3" })), "pi-zero-2w");
  assert.equal(chooseTarget(facts({ arch: "arm64", totalMemBytes: 0.9 * GiB })), "pi-zero-2w", "an ARM board with 1 GiB or less");
  assert.equal(chooseTarget(facts({ arch: "arm64", totalMemBytes: 7.8 * GiB, model: "Raspberry Pi 4 Model B Rev 1.4" })), "node20");
  assert.equal(chooseTarget(facts({ arch: "arm64", totalMemBytes: 7.8 * GiB, model: "Raspberry Pi 5 Model B Rev 1.0" })), "node20");
  assert.equal(chooseTarget(facts({})), "node20");
  assert.equal(chooseTarget(facts({ isDeno: true })), "deno");
  assert.equal(chooseTarget(facts({ env: { PERILINK_TARGET: "pi-zero-2w" } })), "pi-zero-2w");
  assert.throws(() => chooseTarget(facts({ env: { PERILINK_TARGET: "pi5" } })), /PERILINK_TARGET="pi5" is not a build of perilink; use one of node20, pi-zero-2w, deno/);
});

test("dist/perilink.mjs runs the chosen build: the device build answers as itself, a wrong PERILINK_TARGET exits 2", async () => {
  const out = mkdtempSync(path.join(os.tmpdir(), "perilink-dist-"));
  after(() => rmSync(out, { recursive: true, force: true }));
  const run = promisify(execFile);
  await run(nodeBin(), ["--import", "tsx", path.join(REPO_ROOT, "build/build.ts"), "--quiet", "--outdir", out], { cwd: REPO_ROOT });
  const launcher = path.join(out, "perilink.mjs");
  const device = await run(nodeBin(), [launcher, "call", "127.0.0.1:9"], { env: { ...process.env, PERILINK_TARGET: "pi-zero-2w" } }).catch((e: { code: number; stderr: string }) => e);
  assert.equal((device as { code: number }).code, 78);
  assert.match((device as { stderr: string }).stderr, /the pi-zero-2w build serves devices and has no client/);
  const { stdout } = await run(nodeBin(), [launcher, "version"], { env: { ...process.env, PERILINK_TARGET: "node20" } });
  assert.match(stdout, /^\d+\.\d+\.\d+/);
  const wrong = await run(nodeBin(), [launcher, "version"], { env: { ...process.env, PERILINK_TARGET: "nope" } }).catch((e: { code: number; stderr: string }) => e);
  assert.equal((wrong as { code: number }).code, 2);
});
