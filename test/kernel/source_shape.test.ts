import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../helpers/cli.ts";
import { sourceFiles } from "../helpers/source_files.ts";

/** docs/architecture.md: one concern per file, none over this many lines. */
const MAX_LINES = 400;

test("no file under src/ is over 400 lines", () => {
  const long = sourceFiles()
    .map((f) => [path.relative(REPO_ROOT, f), readFileSync(f, "utf8").split("\n").length - 1] as const)
    .filter(([, n]) => n > MAX_LINES)
    .map(([f, n]) => `${f}: ${n} lines`);
  assert.deepEqual(long, [], "split these by concern (docs/architecture.md)");
});
