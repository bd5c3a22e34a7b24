/**
 * The command line as the first stage of a shell pipeline whose reader stops
 * early (`perilink call … | head -1`): the reader's end of the output pipe
 * closes, the next write fails with EPIPE, and perilink must exit quietly as
 * other Unix tools do: nothing on stderr, exit code 0.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { spawnCli } from "../helpers/cli.ts";
import { portOf, tempDir, testServer } from "../helpers/fixtures.ts";

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Bytes the reader took before it closed its end. */
  read: number;
}

/**
 * Runs `perilink ARGS` with stdout a pipe whose reader closes its end after
 * `readBytes` bytes (0: before anything was written).
 */
function runWithEarlyClosingReader(args: string[], readBytes: number, timeoutMs = 20_000): Promise<Outcome> {
  const child = spawnCli(args);
  let stderr = "";
  let read = 0;
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const out = child.stdout!;
  if (readBytes === 0) {
    out.destroy();
  } else {
    out.on("data", (chunk: Buffer) => {
      read += chunk.length;
      if (read >= readBytes) out.destroy();
    });
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`perilink ${args[0]}: still running after ${timeoutMs} ms (killed); stderr: ${stderr}`));
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      // stderr may still be in flight when "exit" fires
      child.stderr!.once("close", () => resolve({ code, signal, stderr, read }));
      if (child.stderr!.closed) resolve({ code, signal, stderr, read });
    });
  });
}

function assertQuiet(what: string, r: Outcome): void {
  assert.equal(r.stderr, "", `${what}: nothing on stderr, got:\n${r.stderr}`);
  assert.equal(r.signal, null, `${what}: not killed by a signal`);
  assert.equal(r.code, 0, `${what}: a quiet exit`);
}

test("call, status and id exit quietly (code 0, empty stderr) when the reader of their output closes before they write", async () => {
  const stateDir = tempDir();
  const server = await testServer({ stateDir });
  const target = `127.0.0.1:${portOf(server)}`;
  assertQuiet("call", await runWithEarlyClosingReader(["call", target, target], 0));
  assertQuiet("status", await runWithEarlyClosingReader(["status", "--state-dir", stateDir], 0));
  assertQuiet("id", await runWithEarlyClosingReader(["id", target], 0));
});

test("call | head -1: a reader that takes the first bytes of a long output and closes leaves call exiting quietly", async () => {
  const server = await testServer();
  const target = `127.0.0.1:${portOf(server)}`;
  // Two echoes of 100 KB each: more than a pipe buffer holds, so call is still writing when the reader goes.
  const r = await runWithEarlyClosingReader(["call", target, target, "--data", "x".repeat(100_000)], 1);
  assert.ok(r.read > 0, "the reader got the start of the output");
  assertQuiet("call | head -1", r);
});
