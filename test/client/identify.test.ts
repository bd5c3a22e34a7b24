import assert from "node:assert/strict";
import dgram from "node:dgram";
import { promises as dns } from "node:dns";
import { after, test } from "node:test";
import { identifyUdp } from "../../src/client/identify.ts";
import { decodeProbeRequest } from "../../src/protocol/probe.ts";
import { FakeIdentity } from "./fake_server.ts";

async function bind(address: string, port: number): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    s.once("error", reject);
    s.bind(port, address, () => resolve());
  });
  after(() => s.close());
  return s;
}

test("identify ignores a UDP reply from another address that comes from the probed port, and takes the probed address's answer", async () => {
  const real = new FakeIdentity();
  const impostor = new FakeIdentity();
  const realSock = await bind("127.0.0.1", 0);
  const port = realSock.address().port;
  const impostorSock = await bind("127.0.0.2", port); // the same port on another loopback address
  let impostorReplied = false;
  realSock.on("message", (msg, rinfo) => {
    const nonce = decodeProbeRequest(msg);
    if (!nonce) return;
    // The impostor has seen the nonce and answers first, correctly signed with its own key.
    impostorSock.send(impostor.probeResponse(nonce), rinfo.port, rinfo.address, () => (impostorReplied = true));
    const t = setTimeout(() => realSock.send(real.probeResponse(nonce), rinfo.port, rinfo.address), 50);
    after(() => clearTimeout(t));
  });
  const id = await identifyUdp("127.0.0.1", port, { timeoutMs: 1000, attempts: 1 });
  assert.ok(impostorReplied, "the impostor's reply went out first");
  assert.equal(id.serverId, real.serverId, "the answer from the probed address is the one taken");
  assert.equal(id.address, "127.0.0.1");
});

test("identify of a name probes the address it resolves to and accepts that address's answer", async () => {
  const real = new FakeIdentity();
  const { address, family } = await dns.lookup("localhost");
  const sock = dgram.createSocket(family === 6 ? "udp6" : "udp4");
  await new Promise<void>((resolve) => sock.bind(0, address, () => resolve()));
  after(() => sock.close());
  sock.on("message", (msg, rinfo) => {
    const nonce = decodeProbeRequest(msg);
    if (nonce) sock.send(real.probeResponse(nonce), rinfo.port, rinfo.address);
  });
  const id = await identifyUdp("localhost", sock.address().port, { timeoutMs: 1000 });
  assert.equal(id.serverId, real.serverId);
  assert.equal(id.address, address, "the probed address is reported");
});
