import dgram from "node:dgram";
import { closeSync } from "node:fs";
import type net from "node:net";

/**
 * The sockets of one endpoint of the listener set (listener_set.ts): binding
 * a TCP listener and its UDP identify responder on one address and port, and
 * closing them, whether bound here or inherited from another process.
 */

/** One address × port of the port group, with its TCP listener and UDP responder. */
export interface Endpoint {
  address: string;
  port: number;
  family: 4 | 6;
  /** `explicit` from a `HOST:PORT` entry, `auto` from an `auto:PORT` entry. */
  source: "explicit" | "auto";
}

export interface Listener {
  endpoint: Endpoint;
  tcp: net.Server;
  udp: dgram.Socket;
  /**
   * Inherited descriptors not yet listened on (until `activate()`); null for
   * a transport that had no inherited socket and was bound here instead.
   */
  adopted: { tcp: number | null; udp: number | null; tcpHandle?: ParkedSocket } | null;
  /** A UDP responder not yet bound (until `activate()`). */
  udpPending: boolean;
  /** The TCP socket held open but watched by no one here (`park()`): others accept on it. */
  parked?: ParkedSocket | null;
}

/** A listening socket's descriptor that this process keeps open without accepting on it. */
export interface ParkedSocket {
  readonly fd: number;
  close(): void;
}

export function listenTcp(tcp: net.Server, ep: Endpoint, backlog: number, reusePort: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    tcp.once("error", onError);
    const options = { host: ep.address, port: ep.port, backlog, ipv6Only: ep.family === 6, exclusive: true, reusePort };
    tcp.listen(options, () => {
      tcp.off("error", onError);
      resolve();
    });
  });
}

export function bindUdp(udp: dgram.Socket, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    udp.once("error", onError);
    udp.bind({ address, port, exclusive: true }, () => {
      udp.off("error", onError);
      resolve();
    });
  });
}

export async function closeListener(l: Listener): Promise<void> {
  if (l.adopted) {
    const { tcp, udp, tcpHandle } = l.adopted;
    l.adopted = null;
    for (const fd of [tcp, udp]) {
      if (fd === null) continue;
      try {
        if (fd === tcp && tcpHandle) tcpHandle.close();
        else closeSync(fd);
      } catch {
        // already closed
      }
    }
    // The transport that had no inherited socket was bound here.
    if (tcp !== null && udp !== null) return;
    if (tcp === null) l.tcp.close();
    if (udp === null) await new Promise<void>((r) => {
      try {
        l.udp.close(() => r());
      } catch {
        r();
      }
    });
    return;
  }
  // TCP first, synchronously: close() stops accepting at once. Its callback would wait for
  // every accepted connection to end, and those belong to the sessions, not to the listener.
  if (l.parked) {
    l.parked.close();
    l.parked = null;
  } else {
    l.tcp.close();
  }
  await new Promise<void>((r) => {
    try {
      if (l.udpPending) {
        l.udpPending = false;
        l.udp.close();
        r();
        return;
      }
      l.udp.close(() => r());
    } catch {
      r();
    }
  });
}
