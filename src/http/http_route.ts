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
  #dead = new Map<string, number>();
  #last: string | null = null;
  #tls: Connector | null;
  #closed = false;
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

  /** Adds addresses (proven to be this server, or named with it) after those known already. */
  addAddresses(list: readonly string[]): void {
    for (const a of list) if (!this.#addresses.includes(a)) this.#addresses.push(a);
  }

  /** The addresses in the order a new connection tries them: the last that worked, the others, those that failed lately. */
  order(now = Date.now()): string[] {
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
    if (this.#closed) return cb(new ClientClosedError("Cannot connect: the dispatcher is closed"), null);
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
        closed: () => this.#closed || this.#host.signal.aborted,
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
        this.#tls({ ...opts, hostname: socket.remoteAddress ?? opts.hostname, servername: opts.servername ?? opts.hostname, httpSocket: socket }, cb);
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
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 1000);
    socket.once("close", (hadError) => {
      this.sockets--;
      this.#host.limiter.release();
      if (hadError && address !== null && !this.#closed) this.failed(address);
    });
  }

  /** Lets requests in flight finish, then closes the pool's connections. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.pool.close();
  }

  async destroy(err?: Error): Promise<void> {
    this.#closed = true;
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
