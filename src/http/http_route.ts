import net from "node:net";
import { buildConnector, Pool } from "undici";
import { formatHostPort } from "../address.ts";
import { ClientClosedError, SocketLimitError, TimeoutError, UnreachableError } from "../errors.ts";
import type { SocketLimiter } from "../client/socket_limiter.ts";
import { openStaggered } from "../client/staggered_open.ts";

/** What every route shares: the dispatcher's socket limit (C9), deadlines, and its shutdown. */
export interface RouteHost {
  limiter: SocketLimiter;
  connectTimeoutMs: number;
  staggerMs: number;
  signal: AbortSignal;
  /** undici Pool options every route's pool gets (timeouts, pipelining…). */
  poolOptions: Pool.Options;
  /** How many connections one server's pool may hold. */
  connections: number;
}

/** An address whose connection failed is tried after the others for this long. */
const DEAD_MS = 30_000;
/** An address not seen leading to the server for this long (no name answered it, no proof) is no longer used. */
const ADDRESS_MS = 10 * 60_000;

type Connector = buildConnector.connector;
type ConnectOptions = buildConnector.Options;

/**
 * One server's HTTP/1.1 keep-alive pool (an undici Pool) and its addresses.
 * Whatever origin a request named, it rides this pool when the origin leads
 * to this server. Each new connection goes to the address that worked last,
 * else to the others in order, Happy Eyeballs style (the first that answers
 * wins: the quicker line); an address whose connection failed, or broke
 * with an error, goes to the back for a while (C5, C8). Every socket counts
 * against the dispatcher's limit for as long as it is open (C9).
 */
export class HttpRoute {
  readonly key: string;
  readonly serverId: string | null;
  readonly port: number;
  readonly pool: Pool;
  #host: RouteHost;
  #addresses: string[] = [];
  /** When each address was last seen leading here (a name's answer, a bound proof); it is dropped ADDRESS_MS after. */
  #seen = new Map<string, number>();
  #dead = new Map<string, number>();
  /** Sockets open now: under socket pressure an idle route's go first. */
  #sockets = new Set<net.Socket>();
  #destroyed = false;
  #last: string | null = null;
  #tls: Connector | null;
  /** Sockets this route holds open now, and connections it opened in all. */
  sockets = 0;
  opened = 0;

  constructor(key: string, serverId: string | null, origin: URL, host: RouteHost) {
    this.key = key;
    this.serverId = serverId;
    this.port = Number(origin.port) || (origin.protocol === "https:" ? 443 : 80);
    this.#host = host;
    this.#tls = origin.protocol === "https:" ? buildConnector({ ...(host.poolOptions.connect as object | undefined) }) : null;
    const connect = (opts: ConnectOptions, cb: Parameters<Connector>[1]): void => this.#connect(opts, cb);
    this.pool = new Pool(origin.origin, { ...host.poolOptions, connections: host.connections, connect });
  }

  get addresses(): readonly string[] {
    return this.#addresses;
  }

  /** Adds addresses (proven to be this server) after those known already, and marks them seen now. */
  addAddresses(list: readonly string[], now = Date.now()): void {
    for (const a of list) {
      if (!this.#seen.has(a)) this.#addresses.push(a);
      this.#seen.set(a, now);
    }
    if (this.#addresses.length > 4 * list.length + 16) this.#expire(now);
  }

  #expire(now: number): void {
    this.#addresses = this.#addresses.filter((a) => {
      const keep = (this.#seen.get(a) ?? 0) + ADDRESS_MS > now;
      if (!keep) this.#seen.delete(a), this.#dead.delete(a);
      return keep;
    });
  }

  /** Whether a new connection would find this route's addresses failed lately (a plain device's one address). */
  get dead(): boolean {
    const now = Date.now();
    return this.#addresses.every((a) => (this.#dead.get(a) ?? 0) > now);
  }

  /** No request queued or running: its sockets may go. */
  get idle(): boolean {
    const s = this.pool.stats;
    return s.queued === 0 && s.running === 0 && s.pending === 0;
  }

  /** Closes the idle keep-alive sockets (another server needs a socket slot); false when there were none. */
  dropIdleSockets(): boolean {
    if (!this.idle || this.#sockets.size === 0) return false;
    for (const s of this.#sockets) s.destroy();
    return true;
  }

  /** The addresses in the order a new connection tries them: the last that worked, the others, those that failed lately. */
  order(now = Date.now()): string[] {
    this.#expire(now);
    const live = this.#addresses.filter((a) => (this.#dead.get(a) ?? 0) <= now);
    const dead = this.#addresses.filter((a) => (this.#dead.get(a) ?? 0) > now).sort((a, b) => this.#dead.get(a)! - this.#dead.get(b)!);
    if (this.#last !== null && live.includes(this.#last)) live.splice(live.indexOf(this.#last), 1), live.unshift(this.#last);
    return [...live, ...dead];
  }

  failed(address: string): void {
    this.#dead.set(address, Date.now() + DEAD_MS);
    if (this.#last === address) this.#last = null;
  }

  #connect(opts: ConnectOptions, cb: Parameters<Connector>[1]): void {
    // A route that is closing still connects for the requests queued on it: its pool closes once they are done.
    if (this.#destroyed || this.#host.signal.aborted) return cb(new ClientClosedError("Cannot connect: the dispatcher is closed"), null);
    const order = this.order().map((host) => ({ host, port: this.port }));
    if (order.length === 0) return cb(new UnreachableError(`Cannot connect to ${opts.hostname}: no address of this server is known`), null);
    const limiter = this.#host.limiter;
    let won: net.Socket | null = null;
    openStaggered<{ host: string; port: number }, net.Socket, net.Socket>(
      order,
      {
        limiter,
        signal: this.#host.signal,
        connect: (a, signal) => tcpConnect(a.host, a.port, this.#host.connectTimeoutMs, signal),
        install: (socket) => {
          if (won !== null) {
            socket.destroy();
            limiter.release();
          } else won = socket;
          return socket;
        },
        drained: () => false,
        closed: () => this.#destroyed || this.#host.signal.aborted,
        isFatal: (err) => err instanceof SocketLimitError,
        closedError: (cause) => new ClientClosedError("Cannot connect: the dispatcher is closed", { cause }),
        failed: (a) => this.failed(a.host),
      },
      this.#host.staggerMs,
    ).then(
      (out) => {
        const socket = out.won;
        if (socket === null) {
          const tried = order.map((a) => formatHostPort(a.host, a.port)).join(", ");
          const why = out.lastErr instanceof Error ? out.lastErr.message : String(out.lastErr);
          return cb(out.fatal ?? new UnreachableError(`Cannot connect to ${opts.hostname}: no address answered (${tried}); last: ${why}`, { cause: out.lastErr }), null);
        }
        this.#held(socket);
        if (this.#tls === null) return cb(null, socket);
        // SNI carries a name, never an address (RFC 6066 §3).
        const name = opts.servername || opts.hostname;
        try {
          this.#tls({ ...opts, hostname: socket.remoteAddress ?? opts.hostname, servername: net.isIP(name) === 0 ? name : "", httpSocket: socket }, cb);
        } catch (err) {
          socket.destroy();
          cb(err as Error, null);
        }
      },
      (err: Error) => cb(err, null),
    );
  }

  /** A connection that won: its slot is given back when it closes; one that broke with an error marks its address. */
  #held(socket: net.Socket): void {
    const address = socket.remoteAddress ?? null;
    this.#last = address;
    this.sockets++;
    this.opened++;
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 1000);
    socket.once("close", (hadError) => {
      this.sockets--;
      this.#sockets.delete(socket);
      this.#host.limiter.release();
      if (hadError && address !== null && !this.#destroyed) this.failed(address);
    });
  }

  /** Lets the requests queued and in flight finish (connecting for them as needed), then closes the pool's connections. */
  async close(): Promise<void> {
    await this.pool.close();
  }

  async destroy(err?: Error): Promise<void> {
    this.#destroyed = true;
    await this.pool.destroy(err ?? null);
  }
}

/** A TCP connection to address:port within `timeoutMs`; `signal` ends the attempt. */
function tcpConnect(host: string, port: number, timeoutMs: number, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const socket = net.connect({ host, port });
    const done = (err: Error | null): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      socket.off("error", done);
      if (err === null) return resolve(socket);
      socket.destroy();
      reject(err);
    };
    const onAbort = (): void => done(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
    const timer = setTimeout(() => done(new TimeoutError("PERILINK_REQUEST_TIMEOUT", `Cannot connect to ${formatHostPort(host, port)} within ${timeoutMs} ms`)), timeoutMs);
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("error", done);
    socket.once("connect", () => done(null));
  });
}
