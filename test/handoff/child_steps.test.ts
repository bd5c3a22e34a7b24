import assert from "node:assert/strict";
import { fork } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { ChildSteps } from "../../src/handoff/child_steps.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { tempDir } from "../helpers/fixtures.ts";

test("a new program that floods the old process with junk and repeated messages over the handoff channel does not grow it; its real step still counts", { skip: detectRuntime().name === "deno" ? "handoff channels are Node.js only" : false }, async () => {
  const script = path.join(tempDir(), "flood.cjs");
  writeFileSync(
    script,
    `const junk = "x".repeat(1024);
     let n = 0;
     const more = () => { for (let i = 0; i < 2000; i++) process.send({ t: i % 2 ? "junk" : "accepting", pad: junk }); if ((n += 2000) < 60000) setImmediate(more); else process.send({ t: "transfer-request" }, () => setTimeout(() => process.exit(0), 200)); };
     more();`,
  );
  const child = fork(script, [], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
  const steps = new ChildSteps(child, 30_000);
  global.gc?.();
  const before = process.memoryUsage().heapUsed;
  assert.equal(await steps.next("transfer-request"), true);
  const grew = (process.memoryUsage().heapUsed - before) / 1048576;
  // 60,000 messages of 1 KiB arrived: kept, they would be 60+ MiB.
  assert.ok(grew < 16, `the old process's heap grew ${grew.toFixed(1)} MiB`);
  assert.equal(await steps.next("accepting"), true, "the first accepting was kept");
  await steps.exited(5000);
  steps.dispose();
});
