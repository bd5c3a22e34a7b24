import assert from "node:assert/strict";
import dgram from "node:dgram";
import { after, test } from "node:test";
import { identifyUdp } from "../../src/client/identify.ts";
import { portOf, testServer } from "../helpers/fixtures.ts";

/** A UDP relay on 127.0.0.3 that passes datagrams to `port` on 127.0.0.1 and the answers back, `edit` applied to requests. */
async function relay(port: number, edit: (b: Buffer) => Buffer = (b) => b): Promise<number> {
  const front = dgram.createSocket("udp4");
  const back = dgram.createSocket("udp4");
  after(() => {
    front.close();
    back.close();
  });
  let client: dgram.RemoteInfo | null = null;
  front.on("message", (m, r) => {
    client = r;
    back.send(edit(Buffer.from(m)), port, "127.0.0.1");
  });
  back.on("message", (m) => {
    if (client) front.send(m, client.port, client.address);
  });
  await new Promise<void>((r) => front.bind(0, "127.0.0.3", r));
  await new Promise<void>((r) => back.bind(0, "127.0.0.1", r));
  return front.address().port;
}

test("a bound probe answer is signed for the address and port it was received on", async () => {
  const server = await testServer();
  const id = await identifyUdp("127.0.0.1", portOf(server), { bound: true, timeoutMs: 1000 });
  assert.equal(id.serverId, server.serverId);
  assert.equal(id.bound, true);
  const plain = await identifyUdp("127.0.0.1", portOf(server), { timeoutMs: 1000 });
  assert.equal(plain.bound, false, "an answer to a probe that did not ask is the first release's");
});

test("a relay elsewhere cannot pass a bound answer off as its own; cleared flags give an unbound answer, never a bound one", async () => {
  const server = await testServer();
  const port = portOf(server);
  const through = await relay(port);
  // The relay's answer says bound, but for 127.0.0.1:port: the client, which probed 127.0.0.3, refuses it.
  await assert.rejects(identifyUdp("127.0.0.3", through, { bound: true, timeoutMs: 600 }), { code: "PERILINK_SIGNATURE" });
  // Unbound probes are what a relay can always pass on: that is why an HTTP pool takes bound proofs only.
  assert.equal((await identifyUdp("127.0.0.3", through, { timeoutMs: 600 })).serverId, server.serverId);
  const clearing = await relay(port, (b) => {
    b[6] = 0;
    return b;
  });
  const id = await identifyUdp("127.0.0.3", clearing, { bound: true, timeoutMs: 600 });
  assert.equal(id.bound, false);
});
