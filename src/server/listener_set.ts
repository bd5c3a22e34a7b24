import dgram from "node:dgram";
import net from "node:net";
import { ListenError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { detectRuntime } from "../runtime/runtime.ts";
import { interfaceAddresses, type InterfaceAddress } from "./interface_addresses.ts";
import { closeSync } from "node:fs";
import { tcpServerFd, udpSocketFd } from "../runtime/handle_fds.ts";
import { socketName, type InheritedSocket } from "./inherited_socket.ts";
import type { ListenSpec } from "./listen_spec.ts";
import { formatHostPort } from "../address.ts";
import { bindUdp, closeListener, listenTcp, type Endpoint, type Listener, type ParkedSocket } from "./listener_sockets.ts";

export type { Endpoint, ParkedSocket };

export interface ListenerHandlers {
  onConnection(socket: net.Socket, endpoint: Endpoint): void;
  onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo, udp: dgram.Socket): void;
  /** An address vanished from the device and its listener was closed. */
  onRemoved?(endpoint: Endpoint): void;
}

export interface ListenerSetOptions {
  backlog?: number;
  /** Whether accepted sockets stay writable after the peer's FIN (sessions answer what runs, then end). */
  allowHalfOpen?: boolean;
  /** Source of the device's addresses (tests inject a fixed list). */
  interfaces?: () => InterfaceAddress[];
  /** Listening sockets the previous process handed over: those matching an endpoint are adopted (the port never closes), accepting only from `activate()`; the others are closed. */
  inherited?: InheritedSocket[];
  /** A failed `start()` leaves the inherited sockets open for a retry (a rollback keeps its TCP sockets and their queues). */
  retainInherited?: boolean;
  /** Bind TCP listeners with SO_REUSEPORT (the `reuseport` handoff: a new process binds the same ports while the old one still listens). */
  reusePort?: boolean;
  /** Bind UDP responders only in `activate()` (the old process holds those ports until it stops). */
  deferUdp?: boolean;
  /** Accepted sockets are not read from (a manager passes them on to a service process unread). */
  pauseOnConnect?: boolean;
}

const key = (address: string, port: number): string => `${address}|${port}`;

/**
 * The multi-address listener (S2): a port group × an address set. Explicit
 * entries must bind at start or start fails; `auto` entries follow the
 * device's addresses through `rescan()`: new addresses get listeners, vanished
 * ones are closed. A port of 0 is chosen by the kernel once and then shared
 * by every address of that entry.
 */
export class ListenerSet {
  #specs: ListenSpec[];
  #handlers: ListenerHandlers;
  #log: Logger;
  #backlog: number;
  #allowHalfOpen: boolean;
  #interfaces: () => InterfaceAddress[];
  #listeners = new Map<string, Listener>();
  #closed = false;
  #scanning: Promise<void> | null = null;
  #retainInherited: boolean;
  #inherited: InheritedSocket[];
  #reusePort: boolean;
  #deferUdp: boolean;
  #pauseOnConnect: boolean;

  constructor(specs: ListenSpec[], handlers: ListenerHandlers, log: Logger, options: ListenerSetOptions = {}) {
    this.#specs = specs.map((s) => ({ ...s }));
    this.#handlers = handlers;
    this.#log = log;
    this.#backlog = options.backlog ?? 511;
    this.#allowHalfOpen = options.allowHalfOpen ?? false;
    this.#interfaces = options.interfaces ?? interfaceAddresses;
    this.#retainInherited = options.retainInherited ?? false;
    this.#inherited = options.inherited ?? [];
    this.#reusePort = options.reusePort ?? false;
    this.#deferUdp = options.deferUdp ?? false;
    this.#pauseOnConnect = options.pauseOnConnect ?? false;
  }

  /** Binds every entry. Throws `ListenError` when an explicit address, or a port, cannot be had. */
  async start(): Promise<void> {
    const closedHere = new Set<number>();
    try {
      for (const spec of this.#specs) {
        const desired = this.#desiredFor(spec);
        if (spec.port === 0) {
          // Port 0 resolved by an earlier generation that did not say which port (a perilink parent
          // does, in PERILINK_PORTS): keep an inherited port of this address that no other entry names.
          const named = new Set(this.#specs.filter((s) => s !== spec && s.port !== 0).map((s) => s.port));
          const prev = this.#inherited.find(
            (i) => !named.has(i.port) && !this.#isAdopted(i.fd) && desired.some((d) => d.address === i.address),
          );
          if (prev) spec.port = prev.port;
        }
        for (const ep of desired) {
          ep.port = spec.port; // port 0 is resolved by the first bind of this entry
          await this.#add(ep, spec, true);
        }
      }
    } catch (err) {
      if (this.#retainInherited) {
        // Not activated yet, nothing listens on them here: only what was bound here closes; the inherited stay for a retry.
        for (const l of this.#listeners.values()) if (l.adopted) l.adopted = { tcp: null, udp: null };
        this.#inherited = [];
      }
      // close() closes the adopted ones: they are not closed again below (the number may be another file's by then).
      for (const i of this.#inherited) if (this.#isAdopted(i.fd)) closedHere.add(i.fd);
      await this.close();
      throw err;
    } finally {
      // Inherited sockets that no endpoint wants (a port the new config dropped) are closed here.
      for (const i of this.#inherited) {
        if (!this.#isAdopted(i.fd) && !closedHere.has(i.fd)) {
          try {
            if (i.handle) i.handle.close();
            else closeSync(i.fd);
          } catch {
            // already closed
          }
          if (i.fromSystemd) {
            this.#log.warn("activation_socket_unused", {
              transport: i.transport,
              address: i.address,
              port: i.port,
              note: "systemd passed a socket that no listen entry names: add a matching --listen entry, or name it tcp@ADDRESS@PORT / udp@ADDRESS@PORT (FileDescriptorName=)",
            });
          } else {
            this.#log.info("inherited_socket_closed", { transport: i.transport, address: i.address, port: i.port });
          }
        }
      }
      this.#inherited = [];
    }
  }

  #isAdopted(fd: number): boolean {
    for (const l of this.#listeners.values()) if (l.adopted && (l.adopted.tcp === fd || l.adopted.udp === fd)) return true;
    return false;
  }

  /** Starts accepting on adopted sockets (after the accept semaphore is taken). */
  async activate(): Promise<void> {
    this.#deferUdp = false;
    for (const l of this.#listeners.values()) {
      if (l.udpPending) {
        l.udpPending = false;
        await bindUdp(l.udp, l.endpoint.address, l.endpoint.port);
      }
      const fds = l.adopted;
      if (!fds) continue;
      l.adopted = null;
      if (fds.tcp !== null) {
        const fd = fds.tcp;
        await new Promise<void>((resolve, reject) => {
          l.tcp.once("error", reject);
          // A kept socket's handle is listened on itself: a second handle on its descriptor would be closed by the first.
          l.tcp.listen(fds.tcpHandle ?? { fd }, () => {
            l.tcp.off("error", reject);
            resolve();
          });
        });
      }
      if (fds.udp !== null) {
        const fd = fds.udp;
        await new Promise<void>((resolve, reject) => {
          l.udp.once("error", reject);
          l.udp.bind({ fd }, () => {
            l.udp.off("error", reject);
            resolve();
          });
        });
      }
    }
  }

  /** Every listening socket with its name, for handing over to a new process (Node.js only). */
  handoffSockets(): { name: string; fd: number }[] {
    const out: { name: string; fd: number }[] = [];
    for (const l of this.#listeners.values()) {
      const { address, port } = l.endpoint;
      out.push({ name: socketName("tcp", address, port), fd: l.parked?.fd ?? l.adopted?.tcp ?? tcpServerFd(l.tcp) });
      out.push({ name: socketName("udp", address, port), fd: l.adopted?.udp ?? udpSocketFd(l.udp) });
    }
    return out;
  }

  /**
   * Stops accepting here but keeps every TCP socket open: `copy` returns a
   * descriptor of the same socket that no event loop here watches (S5
   * semaphore dispatch: service processes take turns accepting on it).
   * Returns the parked sockets; UDP responders keep answering.
   */
  async park(copy: (server: net.Server) => Promise<ParkedSocket>): Promise<ParkedSocket[]> {
    const out: ParkedSocket[] = [];
    for (const l of this.#listeners.values()) {
      if (!l.parked) {
        l.parked = await copy(l.tcp);
        l.tcp.close();
      }
      out.push(l.parked);
    }
    return out;
  }

  /**
   * Closes every listener, as `close()`, but keeps each TCP socket open here,
   * unwatched (`copy`, as `park()`): the port group is another process's now,
   * and a new listener set given these sockets takes it back without a
   * connection in their queues being lost (upgrade probation, S4). A socket
   * `copy` fails for is closed.
   */
  async closeKeeping(copy: (server: net.Server) => Promise<ParkedSocket>): Promise<InheritedSocket[]> {
    const kept: InheritedSocket[] = [];
    for (const l of this.#listeners.values()) {
      if (l.adopted || l.udpPending) continue; // never accepted here: nothing to keep
      const handle = l.parked ?? (await copy(l.tcp).catch((err: unknown) => void this.#log.warn("listener_not_kept", { address: l.endpoint.address, port: l.endpoint.port, error: err })));
      if (!handle) continue;
      l.parked = null;
      l.tcp.close();
      kept.push({ fd: handle.fd, handle, transport: "tcp", address: l.endpoint.address, port: l.endpoint.port });
    }
    await this.close();
    return kept;
  }

  /** Opens listeners for new addresses and closes those whose address vanished. */
  rescan(): Promise<void> {
    if (this.#scanning) return this.#scanning;
    this.#scanning = this.#rescan().finally(() => {
      this.#scanning = null;
    });
    return this.#scanning;
  }

  async #rescan(): Promise<void> {
    if (this.#closed) return;
    const want = new Map<string, { ep: Endpoint; spec: ListenSpec }>();
    for (const spec of this.#specs) {
      for (const ep of this.#desiredFor(spec)) want.set(key(ep.address, ep.port), { ep, spec });
    }
    for (const [k, l] of this.#listeners) {
      if (!want.has(k) && l.endpoint.source === "auto") {
        this.#listeners.delete(k);
        await closeListener(l);
        this.#log.info("listener_removed", { address: l.endpoint.address, port: l.endpoint.port });
        this.#handlers.onRemoved?.(l.endpoint);
      }
    }
    for (const { ep, spec } of want.values()) {
      if (this.#closed) return;
      // As in start(): an entry's port 0 is resolved by its first bind, here or earlier in this loop.
      ep.port = spec.port;
      await this.#add(ep, spec, false).catch(() => {}); // skips an endpoint already listening
    }
  }

  /** The listen entries with every port 0 resolved to the port the kernel chose. */
  resolvedSpecs(): ListenSpec[] {
    return this.#specs.map((s) => ({ ...s }));
  }

  /** The endpoints listening now. */
  endpoints(): Endpoint[] {
    return [...this.#listeners.values()].map((l) => l.endpoint);
  }

  /** The TCP listeners, for a caller that needs their handles. */
  tcpServers(): net.Server[] {
    return [...this.#listeners.values()].map((l) => l.tcp);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#listeners.values()];
    this.#listeners.clear();
    await Promise.all(all.map(closeListener));
  }

  #desiredFor(spec: ListenSpec): Endpoint[] {
    if (spec.kind === "address") {
      return [{ address: spec.address, port: spec.port, family: spec.family, source: "explicit" }];
    }
    const canLinkLocal = detectRuntime().canListenLinkLocal;
    const out: Endpoint[] = [];
    for (const a of this.#interfaces()) {
      if (a.linkLocal && !canLinkLocal) continue;
      out.push({ address: a.address, port: spec.port, family: a.family, source: "auto" });
    }
    return out;
  }

  async #add(ep: Endpoint, spec: ListenSpec, atStart: boolean): Promise<void> {
    const k = key(ep.address, ep.port);
    if (this.#listeners.has(k)) return;
    let l: Listener;
    try {
      const adopted = await this.#adopt(ep);
      if (adopted) {
        this.#listeners.set(k, adopted);
        const { tcp, udp } = adopted.adopted!;
        this.#log.info("listener_adopted", { address: ep.address, port: ep.port, transports: [...(tcp !== null ? ["tcp"] : []), ...(udp !== null ? ["udp"] : [])] });
        return;
      }
      l = await this.#open(ep);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const where = formatHostPort(ep.address, ep.port);
      if (e.code === "EADDRINUSE") {
        const le = new ListenError("PERILINK_ADDRESS_IN_USE", ep.address, ep.port, `Cannot listen on ${where}: address in use; stop the other server or choose another port`, { cause: err });
        if (atStart) throw le;
        this.#log.warn("listener_failed", { address: ep.address, port: ep.port, error: le });
        throw le;
      }
      const le = new ListenError(
        e.code === "EADDRNOTAVAIL" || e.code === "EINVAL" ? "PERILINK_ADDRESS_UNAVAILABLE" : "PERILINK_LISTEN",
        ep.address,
        ep.port,
        `Cannot listen on ${where}: ${e.code ?? e.message}; check that the address is assigned to this device`,
        { cause: err },
      );
      // An auto address may be tentative (IPv6 DAD) or just vanished: try again on the next scan.
      if (atStart && ep.source === "explicit") throw le;
      this.#log.warn("listener_failed", { address: ep.address, port: ep.port, error: le });
      if (atStart) return;
      throw le;
    }
    if (this.#closed) {
      await closeListener(l);
      return;
    }
    if (spec.port === 0) {
      spec.port = l.endpoint.port; // the whole port-group entry now shares the kernel's choice
      ep.port = l.endpoint.port;
    }
    this.#listeners.set(key(l.endpoint.address, l.endpoint.port), l);
    this.#log.info("listener_added", { address: l.endpoint.address, port: l.endpoint.port, transports: ["tcp", "udp"] });
  }

  /**
   * A listener on the inherited sockets of `ep`, if there are any. A perilink
   * parent passes both; systemd may pass only one of them (a ListenStream=
   * without a ListenDatagram=): the other is bound here as usual.
   */
  async #adopt(ep: Endpoint): Promise<Listener | null> {
    const find = (t: string): InheritedSocket | undefined =>
      this.#inherited.find((i) => i.transport === t && i.address === ep.address && i.port === ep.port);
    const tcpIn = find("tcp");
    const udpIn = find("udp");
    if (!tcpIn && !udpIn) return null;
    const endpoint: Endpoint = { ...ep };
    const { tcp, udp } = this.#handles(endpoint);
    const adopted = { tcp: tcpIn?.fd ?? null, udp: udpIn?.fd ?? null, ...(tcpIn?.handle ? { tcpHandle: tcpIn.handle } : {}) };
    const l: Listener = { endpoint, tcp, udp, adopted, udpPending: false };
    try {
      if (!tcpIn) await listenTcp(tcp, ep, this.#backlog, this.#reusePort);
      if (!udpIn) await bindUdp(udp, ep.address, ep.port);
    } catch (err) {
      // Only what was bound here: start() closes the inherited descriptors it did not adopt.
      l.adopted = { tcp: null, udp: null };
      await closeListener(l);
      throw err;
    }
    return l;
  }

  #handles(endpoint: Endpoint): { tcp: net.Server; udp: dgram.Socket } {
    const tcp = net.createServer({ noDelay: true, allowHalfOpen: this.#allowHalfOpen, pauseOnConnect: this.#pauseOnConnect });
    tcp.on("connection", (socket) => this.#handlers.onConnection(socket, endpoint));
    tcp.on("error", (err) => this.#log.error("listener_error", { address: endpoint.address, port: endpoint.port, transport: "tcp", error: err }));
    const udp = dgram.createSocket({ type: endpoint.family === 6 ? "udp6" : "udp4", ipv6Only: endpoint.family === 6 });
    udp.on("message", (msg, rinfo) => this.#handlers.onDatagram(msg, rinfo, udp));
    udp.on("error", (err) => this.#log.error("listener_error", { address: endpoint.address, port: endpoint.port, transport: "udp", error: err }));
    return { tcp, udp };
  }

  async #open(ep: Endpoint): Promise<Listener> {
    // With port 0 the kernel picks a TCP port; UDP then needs the same number. Retry a few times on collision.
    for (let attempt = 0; ; attempt++) {
      const endpoint: Endpoint = { ...ep };
      const { tcp, udp } = this.#handles(endpoint);
      try {
        await listenTcp(tcp, ep, this.#backlog, this.#reusePort);
      } catch (err) {
        udp.close();
        throw err;
      }
      endpoint.port = (tcp.address() as net.AddressInfo).port;
      if (this.#deferUdp) return { endpoint, tcp, udp, adopted: null, udpPending: true };
      try {
        await bindUdp(udp, ep.address, endpoint.port);
      } catch (err) {
        tcp.close();
        udp.close();
        if (ep.port === 0 && (err as NodeJS.ErrnoException).code === "EADDRINUSE" && attempt < 5) continue;
        throw err;
      }
      return { endpoint, tcp, udp, adopted: null, udpPending: false };
    }
  }
}
