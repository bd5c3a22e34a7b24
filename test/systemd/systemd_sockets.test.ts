import assert from "node:assert/strict";
import { test } from "node:test";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import type { BoundSocket } from "../../src/systemd/socket_of_fd.ts";
import { takeActivationSockets } from "../../src/systemd/activation_sockets.ts";

const node = detectRuntime().canInheritSockets;
const kernel = (table: Record<number, BoundSocket | null>) => (fd: number): BoundSocket | null => table[fd] ?? null;
const tcp4 = (address: string, port: number): BoundSocket => ({ transport: "tcp", family: 4, address, port });
const udp4 = (address: string, port: number): BoundSocket => ({ transport: "udp", family: 4, address, port });

test("sockets meant for another pid are ignored, and the variables are removed either way", () => {
  const env: NodeJS.ProcessEnv = { LISTEN_PID: "41", LISTEN_FDS: "1", LISTEN_FDNAMES: "x", KEEP: "1" };
  assert.deepEqual(takeActivationSockets(env, 42, kernel({ 3: tcp4("127.0.0.1", 1025) })), []);
  assert.deepEqual(env, { KEEP: "1" });
  assert.deepEqual(takeActivationSockets({ LISTEN_FDS: "1" }, 42), [], "no LISTEN_PID: not from systemd");
});

test("each socket is identified by the kernel's address, or by a tcp@ADDRESS@PORT name; Deno refuses with PERILINK_SOCKET_ACTIVATION", () => {
  const env: NodeJS.ProcessEnv = { LISTEN_PID: "42", LISTEN_FDS: "3", LISTEN_FDNAMES: `perilink.socket:udp@127.0.0.1@1025:tcp@%3A%3A1@1026` };
  const take = (): unknown => takeActivationSockets(env, 42, kernel({ 3: tcp4("127.0.0.1", 1025), 4: udp4("0.0.0.0", 1025), 5: { transport: "tcp", family: 6, address: "::", port: 1026 } }));
  if (!node) {
    assert.throws(take, (err: Error & { code?: string }) => err.code === "PERILINK_SOCKET_ACTIVATION" && /Deno cannot adopt a listening socket/.test(err.message));
    return;
  }
  assert.deepEqual(take(), [
    { fd: 3, transport: "tcp", address: "127.0.0.1", port: 1025, fromSystemd: true },
    { fd: 4, transport: "udp", address: "127.0.0.1", port: 1025, fromSystemd: true },
    { fd: 5, transport: "tcp", address: "::1", port: 1026, fromSystemd: true },
  ]);
});

test("a descriptor that is not a TCP or UDP socket, or a name of the wrong transport, is a clear PERILINK_SOCKET_ACTIVATION error", { skip: node ? false : "Deno refuses every passed socket" }, () => {
  assert.throws(
    () => takeActivationSockets({ LISTEN_PID: "42", LISTEN_FDS: "1", LISTEN_FDNAMES: "control" }, 42, kernel({})),
    (err: Error & { code?: string }) => err.code === "PERILINK_SOCKET_ACTIVATION" && err.message === 'Cannot use the socket systemd passed as fd 3 ("control"): it is not a TCP or UDP socket; perilink serves ListenStream= and ListenDatagram= sockets with an address and port',
  );
  assert.throws(
    () => takeActivationSockets({ LISTEN_PID: "42", LISTEN_FDS: "1", LISTEN_FDNAMES: "udp@127.0.0.1@1025" }, 42, kernel({ 3: tcp4("127.0.0.1", 1025) })),
    /Cannot use the socket systemd passed as fd 3: it is named "udp@127.0.0.1@1025" but is a TCP socket; name it tcp@…/,
  );
});
