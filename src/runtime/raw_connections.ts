import net from "node:net";
import { detectRuntime } from "./runtime.ts";

/**
 * Accepted connections that are passed on to another process without ever
 * being a `net.Socket` here (Node.js only), as node:cluster's primary passes
 * them: a manager (S5) that built a Socket for each connection only to send
 * it away spent about 13 % of the group's CPU per connection-per-request
 * request on it (docs/benchmark-history.md, "Service processes"). Node has no
 * public API for this: a listening server's libuv handle calls its
 * `onconnection(status, clientHandle)` for each connection it accepts, and
 * the client handle can be sent over an IPC channel as it is. Read here, in
 * the one place that knows about it.
 */

/** An accepted connection's libuv handle: send it, wrap it (`socketOf`) or close it. */
export interface RawConnection {
  readonly raw: true;
}

interface ClientHandle {
  getpeername(out: { address?: string }): number;
  setNoDelay?(enable: boolean): number;
  close(cb?: () => void): void;
}

interface ListenHandle {
  onconnection: (status: number, client: ClientHandle | undefined) => void;
}

/** Our hook on each listening handle (Node puts its own back if the handle is listened on again). */
const hooks = new WeakMap<object, ListenHandle["onconnection"]>();

/**
 * Makes `server` hand its accepted connections to `onConnection` as raw
 * handles instead of emitting 'connection'. Returns false, changing nothing,
 * when the runtime does not have the handle this needs, or is not Node.js
 * (the caller keeps the 'connection' event). Again for the same listening handle: nothing more.
 */
export function acceptRawConnections(server: net.Server, onConnection: (conn: RawConnection) => void): boolean {
  if (detectRuntime().name !== "node") return false; // Deno's handle has the field, and does not call it
  const handle = (server as unknown as { _handle?: ListenHandle | null })._handle;
  if (!handle || typeof handle.onconnection !== "function") return false;
  if (hooks.get(handle) === handle.onconnection) return true;
  const node = handle.onconnection;
  const noDelay = (server as unknown as { noDelay?: boolean }).noDelay === true;
  const hook: ListenHandle["onconnection"] = (status, client) => {
    // A failed accept (EMFILE…) goes Node's way: an 'error' on the server, which the listener logs.
    if (status < 0 || !client) return node.call(handle, status, client);
    if (noDelay) client.setNoDelay?.(true); // as Node does for a server made with noDelay: the option stays on the socket wherever it goes
    onConnection(client as unknown as RawConnection);
  };
  hooks.set(handle, hook);
  handle.onconnection = hook;
  return true;
}

/** Whether something a manager passed is a raw connection (not a `net.Socket`). */
export function isRawConnection(x: unknown): x is RawConnection {
  return typeof x === "object" && x !== null && !(x instanceof net.Socket) && typeof (x as Partial<ClientHandle>).getpeername === "function";
}

/** The address of the connection's peer; "" when it is gone. */
export function rawPeerAddress(conn: RawConnection): string {
  const out: { address?: string } = {};
  return (conn as unknown as ClientHandle).getpeername(out) === 0 ? (out.address ?? "") : "";
}

/** Closes this process's copy (after it was sent, or to drop it). */
export function closeRaw(conn: RawConnection): void {
  (conn as unknown as ClientHandle).close();
}

/**
 * The connection as a `net.Socket` of this process (to serve it, or to answer
 * a refusal), without Nagle's delay, as the listeners' `noDelay` gave every
 * connection they made a Socket of.
 */
export function socketOf(conn: RawConnection, allowHalfOpen: boolean): net.Socket {
  const socket = new net.Socket({ handle: conn, readable: true, writable: true, allowHalfOpen } as unknown as net.SocketConstructorOpts);
  socket.setNoDelay(true);
  return socket;
}
