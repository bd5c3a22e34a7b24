import assert from "node:assert/strict";
import { test } from "node:test";
import { withHost } from "../../src/http/host_header.ts";

test("the URL's host is added in the shape the headers came in, unless the application set one", () => {
  assert.deepEqual(withHost(undefined, "a.test"), { host: "a.test" });
  assert.deepEqual(withHost({ accept: "x" }, "a.test"), { accept: "x", host: "a.test" });
  assert.deepEqual(withHost({ Host: "mine" }, "a.test"), { Host: "mine" });
  assert.deepEqual(withHost(["accept", "x"], "a.test"), ["accept", "x", "host", "a.test"]);
  assert.deepEqual(withHost(["HOST", "mine"], "a.test"), ["HOST", "mine"]);
});

test("a host of undefined or null is none; iterables keep repeated names", () => {
  assert.deepEqual(withHost({ host: undefined, accept: "x" }, "b.test"), { accept: "x", host: "b.test" });
  assert.deepEqual(withHost(["host", undefined as unknown as string], "b.test"), ["host", undefined, "host", "b.test"]);
  const h = new Map<string, string | string[]>([["accept", ["a/a", "b/b"]]]);
  assert.deepEqual(withHost(h as never, "b.test"), ["accept", "a/a", "accept", "b/b", "host", "b.test"]);
});
