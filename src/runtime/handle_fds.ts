import type dgram from "node:dgram";
import type net from "node:net";

/**
 * File descriptors of listening sockets, for handing them to a new process
 * (Node.js only: Deno exposes no descriptors). Node has no public accessor;
 * the TCP server's `_handle.fd` and the UDP socket's internal state handle
 * are read here, in the one place that knows about them.
 */
export function tcpServerFd(server: net.Server): number {
  const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) throw new Error("Cannot read the descriptor of a TCP listener: it is not open");
  return fd;
}

export function udpSocketFd(socket: dgram.Socket): number {
  const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === "state symbol");
  const state = sym ? (socket as unknown as Record<symbol, { handle?: { fd?: number } }>)[sym] : undefined;
  const fd = state?.handle?.fd;
  if (typeof fd !== "number" || fd < 0) throw new Error("Cannot read the descriptor of a UDP socket: it is not open");
  return fd;
}

/**
 * The libuv handle of a listening TCP server, to send over a Node IPC channel
 * as a bare handle: the receiver gets a descriptor of the same socket that no
 * event loop watches until it listens on it (Node.js only).
 */
export function tcpServerHandle(server: net.Server): object {
  const handle = (server as unknown as { _handle?: object | null })._handle;
  if (!handle) throw new Error("Cannot read the handle of a TCP listener: it is not open");
  return handle;
}
