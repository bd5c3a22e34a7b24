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

test("raw mode: createServer() may resolve to the server (Fastify's shape), and one that listens already is refused and closed", async () => {
  const http = await import("node:http");
  const { rawServer } = await import("../../src/server/load_app.ts");
  const later = http.createServer();
  assert.equal(await rawServer("later", async () => later), later);
  const listening = http.createServer();
  await new Promise<void>((r) => listening.listen(0, "127.0.0.1", () => r()));
  await assert.rejects(rawServer("mine", () => listening), (err: Error & { code?: string }) => err.code === "PERILINK_APP" && /listens already \(it called listen\(\) itself\)/.test(err.message));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(listening.listening, false, "the server it opened is closed, so nothing keeps the process alive");
  await assert.rejects(rawServer("nothing", async () => undefined as unknown as import("node:net").Server), /must return \(or resolve to\) a node:net or node:http server/);
});

test("raw mode: a server createServer() made listen on a host name is refused while its lookup runs (Express's app.listen(port, \"localhost\")), and is not left listening", async () => {
  const http = await import("node:http");
  const { rawServer } = await import("../../src/server/load_app.ts");
  const server = http.createServer();
  try {
    await assert.rejects(
      rawServer("by-name", () => server.listen(0, "localhost")),
      (err: Error & { code?: string }) => err.code === "PERILINK_APP" && /listens already \(it called listen\(\) itself\)/.test(err.message),
    );
    // Longer than a lookup of localhost takes: a lookup still running when the server was closed never
    // binds, and one that finished first (a loaded machine) was bound and is closed.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(server.listening, false);
  } finally {
    server.close();
  }
});
