import assert from "node:assert/strict";
import { after, test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { advertisedFor } from "../../src/server/advertised.ts";
import { decodeAddresses, encodeAddresses } from "../../src/protocol/payloads.ts";
import { FrameType } from "../../src/protocol/constants.ts";
import { FakeServer } from "./fake_server.ts";
import { waitFor } from "../helpers/fixtures.ts";
import { twoAddresses } from "../helpers/two_addresses.ts";


test("a link to one address fails over to another the server itself announced, when no name knows it (C5)", async () => {
  // The session's ADDRESSES named ::1; a signed probe there proved it: it is a failover address now.
  const { client, link, dropFirst } = await twoAddresses();
  assert.equal((await link.request("one")).toString(), "one");
  await dropFirst(); // 127.0.0.1 leaves the device: its listener closes, its sessions end
  assert.equal((await link.request("two", { idempotent: true })).toString(), "two");
  assert.equal(client.sessions()[0]!.communicationAddress, "::1");
});

test("what a server announces: its own address first, no loopback to a remote session, no link-local, at most 16, nothing when it would only name the session's own", () => {
  const eps = [
    { address: "192.168.1.20", port: 1025 },
    { address: "127.0.0.1", port: 1025 },
    { address: "fe80::1%eth0", port: 1025 },
    { address: "2001:db8::20", port: 1025 },
    { address: "169.254.3.4", port: 1025 },
    ...Array.from({ length: 30 }, (_, i) => ({ address: `10.0.0.${i + 1}`, port: 1025 })),
  ];
  const list = decodeAddresses(advertisedFor(eps, "2001:db8::20")!);
  assert.equal(list.length, 16);
  assert.deepEqual(list.slice(0, 3), [
    { host: "2001:db8::20", port: 1025 },
    { host: "192.168.1.20", port: 1025 },
    { host: "10.0.0.1", port: 1025 },
  ]);
  assert.ok(!list.some((a) => a.host.startsWith("127.") || a.host.startsWith("fe80") || a.host.startsWith("169.254")));
  // Over loopback only loopback addresses — here only the session's own, which tells the client nothing: no frame.
  assert.equal(advertisedFor(eps, "::ffff:127.0.0.1"), null);
  assert.deepEqual(decodeAddresses(advertisedFor([...eps, { address: "::1", port: 1025 }], "127.0.0.1")!), [{ host: "127.0.0.1", port: 1025 }, { host: "::1", port: 1025 }]);
});

test("a server's announcement cannot point the client at multicast, broadcast, unspecified or (from afar) loopback addresses", async () => {
  const fake = await new FakeServer({
    onFrame: (conn, type, channel, stream) => {
      if (type !== FrameType.ChannelOpen) return false;
      fake.send(conn, FrameType.ChannelOk, channel, stream);
      const announced = ["224.0.0.251", "255.255.255.255", "0.0.0.0", "ff02::1", "::", "169.254.1.1", "240.0.0.1", "127.0.0.1"].map((host) => ({ host, port: fake.port }));
      fake.send(conn, FrameType.Addresses, 0, 0, encodeAddresses([...announced, { host: "::1", port: fake.port }]));
      return true;
    },
  }).start();
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: fake.port, app: "a" });
  assert.equal((await link.request("x")).toString(), "x");
  await waitFor(() => client.addresses().some((r) => r.source === "server"), "the announcement to be read");
  // Over loopback, only the loopback addresses are taken (127.0.0.1, ::1); nothing else.
  assert.deepEqual(client.addresses().filter((r) => r.source === "server").map((r) => r.address).sort(), ["127.0.0.1", "::1"]);
});

test("a malformed ADDRESSES frame (a count past 16, a bad family, trailing bytes) ends the session as a protocol error", () => {
  const ok = encodeAddresses([{ host: "10.0.0.1", port: 1 }]);
  assert.throws(() => decodeAddresses(Buffer.from([17])), /more than 16/);
  assert.throws(() => decodeAddresses(Buffer.from([1, 5, 0, 0, 0, 0, 0, 1])), /family 5/);
  assert.throws(() => decodeAddresses(Buffer.concat([ok, Buffer.from([0])])), /trailing/);
  assert.throws(() => decodeAddresses(ok.subarray(0, 4)), /shorter/);
  // An IPv4-mapped address reads as its IPv4 address, so the loopback and multicast checks see it.
  assert.deepEqual(decodeAddresses(encodeAddresses([{ host: "::ffff:7f00:1", port: 9 }, { host: "::ffff:e000:fb", port: 9 }])), [{ host: "127.0.0.1", port: 9 }, { host: "224.0.0.251", port: 9 }]);
});
