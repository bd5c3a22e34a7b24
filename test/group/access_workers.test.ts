import assert from "node:assert/strict";
import { test } from "node:test";
import { loadOrCreateClientKey } from "../../src/client/client_key.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { runCli } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fixtures.ts";
import { serveGroup } from "../helpers/group.ts";

test("--workers 2 with access keys: a host pairs once and every service process lets it in; trust remove shuts it out of all of them", async (t) => {
  if (!detectRuntime().canInheritSockets) return t.skip("service processes need a runtime that passes sockets between processes (Node.js)");
  const g = await serveGroup(["--access", "keys", "--workers", "2"]);
  const host = tempDir();
  const { fingerprint } = await loadOrCreateClientKey(host);
  const call = () => runCli(["call", `127.0.0.1:${g.port}`, "--state-dir", host, "--json", "--timeout", "5000"]);
  const refused = await call();
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /PERILINK_ACCESS_DENIED/);
  const offer = await runCli(["pair", "--json", "--state-dir", g.stateDir]);
  assert.equal(offer.code, 0, offer.stderr);
  const paired = await runCli(["pair", `127.0.0.1:${g.port}`, (JSON.parse(offer.stdout) as { code: string }).code, "--state-dir", host]);
  assert.equal(paired.code, 0, paired.stderr);
  // Each call is a new process and a new session: the manager passes them in turn to both service processes.
  for (let i = 0; i < 6; i++) {
    const r = await call();
    assert.equal(r.code, 0, r.stderr);
  }
  const st = await g.status();
  assert.equal(st.workers.length, 2);
  assert.ok(st.workers.every((w) => w.requests >= 1), `both service processes answered the paired host: ${JSON.stringify(st.workers.map((w) => w.requests))}`);
  assert.equal((await runCli(["trust", "remove", fingerprint, "--state-dir", g.stateDir])).code, 0);
  for (let i = 0; i < 3; i++) {
    const r = await call();
    assert.equal(r.code, 1, "refused by whichever service process takes it");
    assert.match(r.stderr, /PERILINK_ACCESS_DENIED/);
  }
});
