import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../helpers/cli.ts";

/** docs/architecture.md: one concern per file, none over this many lines. */
const MAX_LINES = 400;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}

test("no file under src/ is over 400 lines", () => {
  const long = sources(path.join(REPO_ROOT, "src"))
    .map((f) => [path.relative(REPO_ROOT, f), readFileSync(f, "utf8").split("\n").length - 1] as const)
    .filter(([, n]) => n > MAX_LINES)
    .map(([f, n]) => `${f}: ${n} lines`);
  assert.deepEqual(long, [], "split these by concern (docs/architecture.md)");
});
