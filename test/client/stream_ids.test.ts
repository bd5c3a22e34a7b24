import assert from "node:assert/strict";
import { after, test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { ClientSession, MAX_STREAM_ID } from "../../src/client/client_session.ts";
import { testServer, waitFor } from "../helpers/fixtures.ts";
import { tcpConnectionsTo } from "../helpers/os_sockets.ts";

test("stream ids never wrap: near 2^32 the links move to a new session with no failed request", async () => {
  const server = await testServer();
  const ep = server.endpoints()[0]!;
  const c = createClient({ lingerMs: 0, stateDir: false, firstStreamId: MAX_STREAM_ID - 2 }); // 3 requests per session; no record shared with other files
  after(() => c.close());
  const a = await c.connect({ host: ep.address, port: ep.port, app: "a" });
  const b = await c.connect({ host: ep.address, port: ep.port, app: "b" });
  for (let i = 0; i < 10; i++) assert.equal((await a.request(`seq${i}`)).toString(), `seq${i}`);
  const burst = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).request(`par${i}`)));
  burst.forEach((r, i) => assert.equal(r.toString(), `par${i}`));
  const accepted = server.status().counters.sessionsAccepted ?? 0;
  assert.ok(accepted >= 4, `moved to new sessions (${accepted} accepted)`);
  await waitFor(() => tcpConnectionsTo([ep.port]) === 1, "retired sessions to close");
  assert.equal(c.socketsInUse, 1);
  assert.equal(new Set(c.sessions().map((r) => r.sessionNumber)).size, 1, "both links ride one session");
});

test("a session that used its last stream id takes no new request and closes itself once answered", async () => {
  const server = await testServer();
  const s = await ClientSession.connect({ host: "127.0.0.1", port: server.endpoints()[0]!.port, firstStreamId: MAX_STREAM_ID });
  after(() => s.destroy());
  const ch = await s.openChannel("a");
  let retired = false;
  s.on("goaway", () => (retired = true));
  const last = ch.request("last");
  assert.ok(retired && s.draining, "it retires as the last id goes out");
  await assert.rejects(ch.request("one more"), (e: unknown) => (e as { code?: string }).code === "PERILINK_REQUEST_REFUSED");
  assert.equal((await last).toString(), "last");
  await waitFor(() => s.closed, "the session to close itself");
});

test("firstStreamId outside 1..2^32-1 is a RangeError", async () => {
  await assert.rejects(ClientSession.connect({ host: "127.0.0.1", port: 9, firstStreamId: 0 }), RangeError);
  await assert.rejects(ClientSession.connect({ host: "127.0.0.1", port: 9, firstStreamId: 2 ** 32 }), RangeError);
});
