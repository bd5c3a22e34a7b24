import assert from "node:assert/strict";
import dgram from "node:dgram";
import net from "node:net";
import { test } from "node:test";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { tcpServerFd, udpSocketFd } from "../../src/runtime/handle_fds.ts";
import { socketOfFd } from "../../src/systemd/socket_of_fd.ts";

const skip = detectRuntime().canInheritSockets ? false : "this runtime exposes no socket descriptors";

test("socketOfFd reads the transport, family, address and port of a TCP or UDP descriptor from /proc", { skip }, async (t) => {
  const v6 = net.createServer();
  await new Promise<void>((r) => v6.listen({ host: "::1", port: 0, ipv6Only: true }, () => r()));
  t.after(() => v6.close());
  const v4 = dgram.createSocket("udp4");
  await new Promise<void>((r) => v4.bind({ address: "127.0.0.1", port: 0 }, () => r()));
  t.after(() => v4.close());
  assert.deepEqual(socketOfFd(tcpServerFd(v6)), { transport: "tcp", family: 6, address: "::1", port: (v6.address() as net.AddressInfo).port });
  assert.deepEqual(socketOfFd(udpSocketFd(v4)), { transport: "udp", family: 4, address: "127.0.0.1", port: v4.address().port });
});

test("socketOfFd answers null for a descriptor that is not a TCP or UDP socket", { skip }, () => {
  assert.equal(socketOfFd(0), null); // stdin: /dev/null or a pipe under the test runner
  assert.equal(socketOfFd(987_654), null); // not open
});
