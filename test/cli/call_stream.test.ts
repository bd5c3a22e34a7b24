import assert from "node:assert/strict";
import crypto from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { runCli } from "../helpers/cli.ts";
import { portOf, tempDir, testServer } from "../helpers/fixtures.ts";

test("call --data-file FILE --output FILE streams a file through the demo app's echo and back, byte for byte", async () => {
  const server = await testServer({ limits: { maxFrameBytes: 64 * 1024 } });
  const dir = tempDir();
  const input = path.join(dir, "job.bin");
  const output = path.join(dir, "back.bin");
  const bytes = crypto.randomBytes(3 * 1024 * 1024 + 11); // 48 of the server's frames
  await fs.writeFile(input, bytes);
  const r = await runCli(["call", `127.0.0.1:${portOf(server)}`, "--data-file", input, "--output", output, "--state-dir", tempDir()], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.ok((await fs.readFile(output)).equals(bytes));
});

test("call --data-file - --output - streams stdin to stdout", async () => {
  const server = await testServer();
  const r = await runCli(["call", `127.0.0.1:${portOf(server)}`, "--data-file", "-", "--output", "-", "--state-dir", tempDir()], { input: "a print job on stdin\n", timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "a print job on stdin\n");
});

test("call --data-file with two targets, with --json, or a missing file is a usage error (exit 2)", async () => {
  for (const args of [
    ["call", "127.0.0.1:1", "127.0.0.1:2", "--data-file", "-"],
    ["call", "127.0.0.1:1", "--output", "-", "--json"],
    ["call", "127.0.0.1:1", "--data-file", "/nonexistent/job.bin"],
  ]) {
    const r = await runCli([...args, "--state-dir", tempDir()]);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /PERILINK_USAGE/);
  }
});

test("a call --output FILE that fails leaves an existing FILE as it was and no part file behind", async () => {
  const server = await testServer({ access: "keys" }); // this client's key is not trusted: the channel is refused
  const dir = tempDir();
  const output = path.join(dir, "scan.png");
  await fs.writeFile(output, "the previous scan");
  const r = await runCli(["call", `127.0.0.1:${portOf(server)}`, "--data", "x", "--output", output, "--state-dir", tempDir()], { timeoutMs: 60_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /PERILINK_ACCESS_DENIED/);
  assert.equal(await fs.readFile(output, "utf8"), "the previous scan");
  assert.deepEqual(await fs.readdir(dir), ["scan.png"]);
});
