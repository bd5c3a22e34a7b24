import assert from "node:assert/strict";
import { test } from "node:test";
import { loadApp } from "../../src/server/load_app.ts";
import { tempDir } from "../helpers/fixtures.ts";

test("loadApp: the built-in demo app by name; an Object.prototype name is a path, not a built-in app", async () => {
  const demo = await loadApp("demo");
  assert.equal(demo.kind, "session");
  const cwd = tempDir();
  for (const name of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
    // Before, "constructor" found Object itself in the built-in table and served it as an app.
    await assert.rejects(loadApp(name, cwd), (err: Error & { code?: string }) => err.code === "PERILINK_APP" && err.message.includes(`Cannot load app ${name}`), name);
  }
});
