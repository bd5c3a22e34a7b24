import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { ERROR_CODES, isErrorCode, PerilinkError } from "../../src/errors.ts";
import { REPO_ROOT } from "../helpers/cli.ts";
import { sourceFiles } from "../helpers/source_files.ts";

/** `"PERILINK_…"` literals in the sources, apart from environment variable names (`…_ENV = "PERILINK_…"`). */
function codesUsed(): Map<string, string> {
  const used = new Map<string, string>();
  for (const file of sourceFiles()) {
    const text = readFileSync(file, "utf8");
    for (const line of text.split("\n")) {
      if (/_ENV\s*=\s*"PERILINK_/.test(line)) continue;
      for (const m of line.matchAll(/"(PERILINK_[A-Z_]+)"/g)) used.set(m[1]!, path.relative(REPO_ROOT, file));
    }
  }
  return used;
}

test("every error code thrown anywhere in src is listed in errors.ts", () => {
  const known = new Set<string>(ERROR_CODES);
  const stray = [...codesUsed()].filter(([code]) => !known.has(code)).map(([code, file]) => `${code} (${file})`);
  assert.deepEqual(stray, [], "add these to ERROR_CODES in src/errors.ts and to docs/errors.md");
});

test("every error code in errors.ts is documented in docs/errors.md", () => {
  const doc = readFileSync(path.join(REPO_ROOT, "docs", "errors.md"), "utf8");
  const missing = ERROR_CODES.filter((code) => !doc.includes(code));
  assert.deepEqual(missing, []);
});

test("isErrorCode accepts the listed codes only, and errors keep the code they were made with", () => {
  assert.equal(isErrorCode("PERILINK_CONFIG"), true);
  assert.equal(isErrorCode("PERILINK_NOPE"), false);
  assert.equal(isErrorCode(7), false);
  assert.equal(new PerilinkError("PERILINK_SOCKET_LIMIT", "m").code, "PERILINK_SOCKET_LIMIT");
});
