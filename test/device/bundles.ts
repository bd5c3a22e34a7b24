import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { REPO_ROOT } from "../helpers/cli.ts";

const run = promisify(execFile);

/** The Node.js executable: this one on Node, the one on PATH when the tests run on Deno. */
export function nodeBin(): string {
  return detectRuntime().name === "node" ? process.execPath : "node";
}

const built = new Map<string, Promise<string>>();

/** Builds the bundle of `target` once per test process into a temporary directory; returns its path. */
export function bundleFor(target: string): Promise<string> {
  let p = built.get(target);
  if (!p) {
    p = (async () => {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), "perilink-bundle-"));
      await run(nodeBin(), ["--import", "tsx", path.join(REPO_ROOT, "build/build.ts"), "--quiet", "--target", target, "--outdir", dir], { cwd: REPO_ROOT });
      return path.join(dir, target, "perilink.mjs");
    })();
    built.set(target, p);
  }
  return p;
}

/** V8's heap limit in a node started with `flags`, as `v8.getHeapStatistics()` reports it. */
export async function heapLimitWith(flags: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { stdout } = await run(nodeBin(), [...flags, "-e", "process.stdout.write(String(require('v8').getHeapStatistics().heap_size_limit))"], { env });
  return Number(stdout);
}
