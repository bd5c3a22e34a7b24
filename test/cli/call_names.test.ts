import assert from "node:assert/strict";
import { test } from "node:test";
import { runCli } from "../helpers/cli.ts";
import { answerFrom, FakeNameService } from "../helpers/fake_name_service.ts";
import { freePort } from "../helpers/free_port.ts";
import { tempDir, testServer } from "../helpers/fixtures.ts";

test("perilink call accepts names (--name-server) and --json prints the address list beside the sessions", async () => {
  const port = await freePort();
  const server = await testServer({ listen: [`127.0.0.1:${port}`, `127.0.0.2:${port}`] });
  const dns = await new FakeNameService().start();
  dns.reply = (q) => [{ data: answerFrom({ "perisrv.test": ["127.0.0.1", "127.0.0.2"] }, q) }];
  const r = await runCli(["call", `perisrv.test:${port}`, `127.0.0.2:${port}`, "--name-server", dns.endpoint, "--json"], {
    env: { ...process.env, PERILINK_STATE_DIR: tempDir() },
  });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as {
    sessions: { requestedHost: string; requestedAddress: string; sessionNumber: number; serverId: string }[];
    addresses: { name: string; address: string; source: string; ttl: number | null; serverId: string | null }[];
  };
  assert.deepEqual(out.sessions.map((s) => s.requestedHost), ["perisrv.test", "127.0.0.2"]);
  assert.equal(new Set(out.sessions.map((s) => s.sessionNumber)).size, 1, "one session for the name and the address");
  const rows = out.addresses.filter((a) => a.source !== "server").map((a) => `${a.name} ${a.address} ${a.source}`).sort(); // the server's own announcements: test/client/server_addresses.test.ts
  assert.deepEqual(rows.filter((x) => !x.includes(" ptr")), ["127.0.0.2 127.0.0.2 numeric", "perisrv.test 127.0.0.1 dns", "perisrv.test 127.0.0.2 dns"]);
  for (const a of out.addresses) if (a.address === "127.0.0.1") assert.equal(a.serverId, server.serverId);
});
