import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { identifyUdp } from "../../src/client/identify.ts";
import { ListenError } from "../../src/errors.ts";
import { silentLogger } from "../../src/logger.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { interfaceAddresses, type InterfaceAddress } from "../../src/server/interface_addresses.ts";
import { startServer } from "../../src/server/start_server.ts";
import { tempDir, testServer } from "../helpers/fixtures.ts";

test("auto mode listens on every address of the machine's up interfaces, TCP and UDP on one port", async () => {
  const server = await testServer({ listen: ["auto:0"] });
  const want = interfaceAddresses()
    .filter((a) => !a.linkLocal || detectRuntime().canListenLinkLocal)
    .map((a) => a.address)
    .sort();
  const eps = server.endpoints();
  assert.deepEqual(eps.map((e) => e.address).sort(), want);
  assert.equal(new Set(eps.map((e) => e.port)).size, 1, "one port for the whole port group entry");
  const status = server.status();
  assert.equal(status.listeners.length, eps.length * 2);
  for (const ep of eps) {
    const transports = status.listeners.filter((l) => l.address === ep.address).map((l) => l.transport).sort();
    assert.deepEqual(transports, ["tcp", "udp"]);
  }
  // Probe only the loopback ones: traffic stays on this machine.
  for (const ep of eps.filter((e) => e.address === "127.0.0.1" || e.address === "::1")) {
    assert.equal((await identifyUdp(ep.address, ep.port)).serverId, server.serverId);
  }
});

test("follows addresses that appear and vanish on rescan", async () => {
  let addrs: InterfaceAddress[] = [{ address: "127.0.0.1", family: 4, iface: "lo", linkLocal: false }];
  const server = await testServer({ listen: ["auto:0"], interfaces: () => addrs });
  const port = server.endpoints()[0]!.port;
  addrs = [...addrs, { address: "127.0.0.9", family: 4, iface: "lo", linkLocal: false }, { address: "::1", family: 6, iface: "lo", linkLocal: false }];
  await server.rescan();
  assert.deepEqual(server.endpoints().map((e) => e.address).sort(), ["127.0.0.1", "127.0.0.9", "::1"]);
  assert.equal((await identifyUdp("127.0.0.9", port)).serverId, server.serverId);
  addrs = addrs.filter((a) => a.address !== "127.0.0.9");
  await server.rescan();
  assert.deepEqual(server.endpoints().map((e) => e.address).sort(), ["127.0.0.1", "::1"]);
  await assert.rejects(identifyUdp("127.0.0.9", port, { timeoutMs: 300 }));
  assert.equal((await identifyUdp("::1", port)).serverId, server.serverId);
});

test("serves a port group: several ports on one address, the same identity on each", async () => {
  const server = await testServer({ listen: ["127.0.0.1:0", "127.0.0.1:0"] });
  const ports = server.endpoints().map((e) => e.port);
  assert.equal(new Set(ports).size, 2);
  for (const p of ports) assert.equal((await identifyUdp("127.0.0.1", p)).serverId, server.serverId);
});

test("fails to start with PERILINK_ADDRESS_IN_USE when a port of the group is taken, and frees what it bound", async () => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.2", () => r()));
  const port = (blocker.address() as net.AddressInfo).port;
  try {
    await assert.rejects(
      startServer({ listen: [`127.0.0.1:${port}`, `127.0.0.2:${port}`], stateDir: tempDir(), logger: silentLogger }),
      (e: unknown) => e instanceof ListenError && e.code === "PERILINK_ADDRESS_IN_USE" && e.message.includes(`127.0.0.2:${port}`),
    );
    // 127.0.0.1:port was bound first; the failed start must have released it.
    const again = net.createServer();
    await new Promise<void>((resolve, reject) => {
      again.once("error", reject);
      again.listen(port, "127.0.0.1", () => resolve());
    });
    again.close();
  } finally {
    blocker.close();
  }
});

test("fails to start with PERILINK_ADDRESS_UNAVAILABLE for an explicit address the device does not have", async () => {
  await assert.rejects(
    startServer({ listen: ["[2001:db8::dead]:0"], stateDir: tempDir(), logger: silentLogger }),
    (e: unknown) => e instanceof ListenError && e.code === "PERILINK_ADDRESS_UNAVAILABLE",
  );
});
