import assert from "node:assert/strict";
import dgram from "node:dgram";
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { identifyTcp, identifyUdp } from "../../src/client/identify.ts";
import { IdentityError, SignatureError } from "../../src/errors.ts";
import { PROBE_RESPONSE_SIZE } from "../../src/protocol/constants.ts";
import { SERVER_HELLO_V2_SIZE } from "../../src/protocol/sealed_handshake.ts";
import { silentLogger } from "../../src/logger.ts";
import { startServer } from "../../src/server/start_server.ts";
import { tempDir, testServer } from "../helpers/fixtures.ts";

test("answers with the same serverId over UDP and TCP on 127.0.0.1, 127.0.0.2 and ::1", async () => {
  const server = await testServer({ listen: ["127.0.0.1:0", "127.0.0.2:0", "[::1]:0"] });
  const eps = server.endpoints();
  assert.equal(eps.length, 3);
  const seen = new Set<string>();
  const keys = new Set<string>();
  for (const ep of eps) {
    for (const r of [await identifyUdp(ep.address, ep.port), await identifyTcp(ep.address, ep.port)]) {
      seen.add(r.serverId);
      keys.add(r.keyFingerprint);
      assert.equal(r.address, ep.address);
    }
  }
  assert.deepEqual([...seen], [server.serverId]);
  assert.equal(keys.size, 1);
});

test("identifyTcp refuses a timeout that is not a number of milliseconds before it connects", async () => {
  for (const timeoutMs of [-1, Number.NaN, 1e12]) {
    await assert.rejects(identifyTcp("127.0.0.1", 9, { timeoutMs }), (e: unknown) => (e as { code?: string }).code === "PERILINK_CONFIG", String(timeoutMs));
  }
});

test("keeps its identifier and key across a restart with the same state directory", async () => {
  const stateDir = tempDir();
  const first = await startServer({ listen: ["127.0.0.1:0"], stateDir, logger: silentLogger });
  const a = await identifyUdp("127.0.0.1", first.endpoints()[0]!.port);
  await first.drain(500);
  const second = await startServer({ listen: ["127.0.0.1:0"], stateDir, logger: silentLogger });
  const b = await identifyUdp("127.0.0.1", second.endpoints()[0]!.port);
  await second.drain(500);
  assert.equal(b.serverId, a.serverId);
  assert.equal(b.keyFingerprint, a.keyFingerprint);
});

test("gives a second server with another state directory another identifier", async () => {
  const one = await testServer();
  const two = await testServer();
  assert.notEqual(one.serverId, two.serverId);
  const a = await identifyUdp("127.0.0.1", one.endpoints()[0]!.port);
  const b = await identifyUdp("127.0.0.1", two.endpoints()[0]!.port);
  assert.notEqual(a.keyFingerprint, b.keyFingerprint);
});

test("stores the identity in a 0700 directory as a 0600 file", async () => {
  const stateDir = path.join(tempDir(), "nested", "state");
  await testServer({ stateDir });
  assert.equal((await fs.stat(stateDir)).mode & 0o777, 0o700);
  assert.equal((await fs.stat(path.join(stateDir, "identity.json"))).mode & 0o777, 0o600);
  assert.equal((await fs.stat(path.join(stateDir, "control.sock"))).mode & 0o777, 0o600);
});

test("refuses to start on a corrupt identity instead of making a new one", async () => {
  const stateDir = tempDir();
  await fs.writeFile(path.join(stateDir, "identity.json"), '{"version":1,"serverId":"nope"}', { mode: 0o600 });
  await assert.rejects(
    startServer({ listen: ["127.0.0.1:0"], stateDir, logger: silentLogger }),
    (e: unknown) => e instanceof IdentityError && e.code === "PERILINK_IDENTITY" && /serverId is not a UUID/.test(e.message),
  );
  await fs.writeFile(path.join(stateDir, "identity.json"), "garbage");
  await assert.rejects(startServer({ listen: ["127.0.0.1:0"], stateDir, logger: silentLogger }), IdentityError);
  assert.equal(await fs.readFile(path.join(stateDir, "identity.json"), "utf8"), "garbage", "the file is left as it was");
});

test("rejects a UDP reply whose signature was tampered with", async () => {
  const server = await testServer();
  const port = server.endpoints()[0]!.port;
  // A relay on 127.0.0.3 that forwards probes to the real server and flips one signature byte of each reply.
  const relay = dgram.createSocket("udp4");
  const upstream = dgram.createSocket("udp4");
  await new Promise<void>((r) => relay.bind(port, "127.0.0.3", () => r()));
  await new Promise<void>((r) => upstream.bind(0, "127.0.0.1", () => r()));
  let client: dgram.RemoteInfo | undefined;
  relay.on("message", (msg, rinfo) => {
    client = rinfo;
    upstream.send(msg, port, "127.0.0.1");
  });
  upstream.on("message", (msg) => {
    assert.equal(msg.length, PROBE_RESPONSE_SIZE);
    msg[60] = msg[60]! ^ 0xff; // inside the signature (offset 56..119)
    relay.send(msg, client!.port, client!.address);
  });
  try {
    await assert.rejects(identifyUdp("127.0.0.3", port, { timeoutMs: 600 }), SignatureError);
  } finally {
    relay.close();
    upstream.close();
  }
});

test("rejects a TCP handshake whose signature was tampered with", async () => {
  const server = await testServer();
  const port = server.endpoints()[0]!.port;
  const proxy = net.createServer((down) => {
    const up = net.connect(port, "127.0.0.1");
    let seen = 0;
    down.pipe(up);
    up.on("data", (chunk: Buffer) => {
      const at = SERVER_HELLO_V2_SIZE - 10; // inside the signature
      if (seen <= at && seen + chunk.length > at) chunk[at - seen] = chunk[at - seen]! ^ 0xff;
      seen += chunk.length;
      down.write(chunk);
    });
    up.on("error", () => down.destroy());
    down.on("error", () => up.destroy());
    down.on("close", () => up.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", () => r()));
  try {
    const proxyPort = (proxy.address() as net.AddressInfo).port;
    await assert.rejects(ClientSession.connect({ host: "127.0.0.1", port: proxyPort, timeoutMs: 2000 }), SignatureError);
  } finally {
    proxy.close();
  }
});
