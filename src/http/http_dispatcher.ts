import path from "node:path";
import { Dispatcher, type Pool } from "undici";
import { checkMs } from "../duration.ts";
import { ClientClosedError } from "../errors.ts";
import { TARGET } from "../target.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import { CLIENT_PIN_FILE } from "../client/client_options.ts";
import { IdentityBook } from "../client/identity_book.ts";
import { NameResolver } from "../client/names/name_resolver.ts";
import type { ResolutionOptions } from "../client/names/resolution_options.ts";
import { SocketLimiter } from "../client/socket_limiter.ts";
import { STAGGER_MS } from "../client/staggered_open.ts";
import { FailoverHandler } from "./failover_handler.ts";
import { legacyHandler } from "./legacy_handler.ts";
import { withHost } from "./host_header.ts";
import { HttpRoute, type RouteHost } from "./http_route.ts";
import { ServerLocator } from "./server_locator.ts";

export interface DispatcherOptions {
  /** Connections one server's pool may hold (default 1: one keep-alive connection per server). */
  connections?: number;
  /** TCP sockets the dispatcher holds at most, every server together (default: the target's client maxSessions). */
  maxSockets?: number;
  /** Connections that may wait for a socket when all are in use, and for how long (then `PERILINK_SOCKET_LIMIT`). */
  maxWaiting?: number;
  waitTimeoutMs?: number;
  /** Ask each address for a perilink server's signed identity (C1; default true). Off: servers are known by their names' addresses only. */
  probe?: boolean;
  /** How long an address may take to answer the identity probe (default 250 ms; a silent one is taken for a plain HTTP device and not asked again for 5 minutes). */
  probeTimeoutMs?: number;
  /** How long what an origin led to is kept before its name is asked again (default 30 s). */
  identityTtlMs?: number;
  connectTimeoutMs?: number;
  /** Name sources, as `createClient`'s `resolution` (docs/client.md). */
  resolution?: ResolutionOptions;
  /** Where the pins and the known-servers record are kept (shared with `createClient`'s); false: in memory only. */
  stateDir?: string | false;
  /** Accept a perilink server other than the one a name or address led to before (`PERILINK_SERVER_CHANGED` otherwise). */
  trustNew?: boolean;
  /** Servers with a pool at once (the least recently used idle one is closed beyond it; default 256). */
  maxServers?: number;
  /** undici Pool options every server's pool gets: headersTimeout, bodyTimeout, keepAliveTimeout, connect (TLS)… */
  pool?: Omit<Pool.Options, "connections" | "factory">;
}

/** One row per server the dispatcher has a pool for. */
export interface HttpServerRow {
  key: string;
  serverId: string | null;
  addresses: string[];
  sockets: number;
  opened: number;
}

type Handler = Dispatcher.DispatchHandler;

/** Origins whose pool is remembered for the fast path (the least recently found one goes). */
const KNOWN_ORIGINS = 1024;

/**
 * An undici Dispatcher keyed by server identity (C3–C5, C9 for HTTP): one
 * keep-alive pool per server, not per origin. `fetch("http://printer.local/")`
 * and `fetch("http://192.168.1.20/")` ride one connection when both lead to
 * the same server; the `Host` header stays what each URL says.
 */
export class PerilinkDispatcher extends Dispatcher {
  #locator: ServerLocator;
  #routes = new Map<string, HttpRoute>();
  #host: RouteHost;
  #shutdown = new AbortController();
  #maxServers: number;
  #closed = false;
  #destroyed = false;
  /** Requests accepted before close() whose origin is still being located: close() lets them reach their pool first. */
  #routing = new Set<Promise<void>>();
  /** Origins (as requests name them) and the pool each led to, until identityTtlMs has passed. */
  #known = new Map<string, { route: HttpRoute; until: number }>();
  #ttlMs: number;
  #book: IdentityBook;
  /** Origins as requests spell them, parsed once. */
  #parsed = new Map<string, { url: URL; port: number }>();

  constructor(options: DispatcherOptions = {}) {
    super();
    const d = TARGET.client;
    const probeTimeoutMs = options.probeTimeoutMs ?? 250;
    const ttlMs = (this.#ttlMs = options.identityTtlMs ?? 30_000);
    const waitTimeoutMs = options.waitTimeoutMs ?? d.waitTimeoutMs;
    const connectTimeoutMs = options.connectTimeoutMs ?? 3000;
    for (const [name, v] of Object.entries({ probeTimeoutMs, identityTtlMs: ttlMs, waitTimeoutMs, connectTimeoutMs })) checkMs(v, "dispatcher option", name);
    if (typeof options.pool?.connect === "function") throw new TypeError("pool.connect must be undici's TLS options (an object): perilink/http makes the connections itself");
    const connections = options.connections ?? 1;
    if (!Number.isInteger(connections) || connections < 1) throw new RangeError("connections must be an integer ≥ 1");
    this.#maxServers = options.maxServers ?? 256;
    if (!Number.isInteger(this.#maxServers) || this.#maxServers < 1) throw new RangeError("maxServers must be an integer ≥ 1");
    const stateDir = options.stateDir === false ? null : path.resolve(options.stateDir ?? defaultStateDir());
    const book = new IdentityBook(ttlMs, 4096, stateDir === null ? {} : { pinFile: path.join(stateDir, CLIENT_PIN_FILE) });
    this.#locator = new ServerLocator({
      resolver: new NameResolver(options.resolution, this.#shutdown.signal),
      book,
      probe: options.probe !== false,
      probeTimeoutMs,
      ttlMs,
      trustNew: options.trustNew === true,
      maxOrigins: 4096,
    });
    const limiter = new SocketLimiter(options.maxSockets ?? d.maxSessions, options.maxWaiting ?? d.maxWaiting, waitTimeoutMs, {
      what: "connection",
      hint: "raise maxSockets or maxWaiting, or use fewer servers at once",
    });
    limiter.onPressure = () => this.#freeIdleSocket();
    this.#book = book;
    this.#host = {
      limiter,
      connectTimeoutMs,
      staggerMs: STAGGER_MS,
      signal: this.#shutdown.signal,
      poolOptions: { ...options.pool },
      connections,
    };
  }

  /** The servers with a pool, their addresses and sockets. */
  servers(): HttpServerRow[] {
    return [...this.#routes.values()].map((r) => ({ key: r.key, serverId: r.serverId, addresses: [...r.addresses], sockets: r.sockets, opened: r.opened }));
  }

  /** TCP sockets held now, every server together. */
  get socketsInUse(): number {
    return this.#host.limiter.used;
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Handler): boolean {
    if (this.#closed) {
      fail(handler, new ClientClosedError("Cannot send the request: the dispatcher is closed; create a new one"));
      return false;
    }
    const origin = String(opts.origin);
    let parsed = this.#parsed.get(origin);
    if (parsed === undefined) {
      try {
        const url = new URL(origin);
        if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError(`the perilink dispatcher speaks http: and https:, not ${url.protocol}`);
        parsed = { url, port: Number(url.port) || (url.protocol === "https:" ? 443 : 80) };
      } catch (err) {
        fail(handler, err as Error);
        return false;
      }
      if (this.#parsed.size >= KNOWN_ORIGINS) this.#parsed.delete(this.#parsed.keys().next().value!);
      this.#parsed.set(origin, parsed);
    }
    const { url, port } = parsed;
    const sent = { ...opts, headers: withHost(opts.headers, url.host) };
    // A resend goes where the origin leads now: its server's pool (which connects elsewhere), or a plain device's next address.
    const again = (h: FailoverHandler): void => {
      const known = this.#fresh(origin);
      if (known !== null) return void known.pool.dispatch(sent, h as Handler);
      const routed = this.#route(origin, url, port).then(
        (route) => void route.pool.dispatch(sent, h as Handler),
        (err: Error) => h.onError(err),
      );
      this.#routing.add(routed);
      void routed.finally(() => this.#routing.delete(routed));
    };
    const h = new FailoverHandler(handler, sent, again, () => this.#unreachable(origin, url.hostname, port));
    again(h);
    return true;
  }

  /** The pool an origin led to lately, still open and its address not failed: the request goes there at once. */
  #fresh(origin: string): HttpRoute | null {
    const known = this.#known.get(origin);
    if (known === undefined || known.until <= Date.now() || this.#routes.get(known.route.key) !== known.route || known.route.dead) return null;
    this.#routes.delete(known.route.key);
    this.#routes.set(known.route.key, known.route); // the most recently used last
    return known.route;
  }

  /** Every address failed: the name is asked again, and the origin's server found again, at the next request. */
  #unreachable(origin: string, host: string, port: number): void {
    this.#known.delete(origin);
    this.#locator.invalidate(host, port);
  }

  async #route(origin: string, url: URL, port: number): Promise<HttpRoute> {
    const located = await this.#locator.locate(url.hostname, port);
    if (this.#destroyed) throw new ClientClosedError("Cannot send the request: the dispatcher was destroyed meanwhile");
    // TLS is verified against the name: an https pool is one server's, for one name.
    const suffix = `|${port}|${url.protocol}${url.protocol === "https:" ? url.hostname : ""}`;
    let route: HttpRoute;
    if (located.kind === "server") {
      route = this.#routeFor(`id:${located.serverId}${suffix}`, located.serverId, url);
      route.addAddresses(located.addresses);
    } else {
      // A plain device is reached only at its origin's own addresses: the first with a pool that works, else the first that did not fail.
      const keyOf = (a: string): string => `http:${a}${suffix}`;
      const live = (a: string): boolean => !(this.#routes.get(keyOf(a))?.dead ?? false);
      const address = located.addresses.find((a) => this.#routes.has(keyOf(a)) && live(a)) ?? located.addresses.find(live) ?? located.addresses[0]!;
      route = this.#routeFor(keyOf(address), null, url);
      route.addAddresses([address]);
    }
    if (this.#known.size >= KNOWN_ORIGINS) this.#known.delete(this.#known.keys().next().value!);
    this.#known.delete(origin);
    this.#known.set(origin, { route, until: Date.now() + this.#ttlMs });
    return route;
  }

  #routeFor(key: string, serverId: string | null, url: URL): HttpRoute {
    let route = this.#routes.get(key);
    if (route === undefined) {
      if (this.#routes.size >= this.#maxServers) this.#evict();
      route = new HttpRoute(key, serverId, url, this.#host);
      this.#routes.set(key, route);
    } else {
      this.#routes.delete(key);
      this.#routes.set(key, route); // the most recently used last
    }
    return route;
  }

  /** The least recently used idle pool goes; none idle: the bound waits (sockets stay bounded by maxSockets). */
  #evict(): void {
    for (const [key, route] of this.#routes) {
      if (!route.idle) continue;
      this.#routes.delete(key);
      void route.close();
      return;
    }
  }

  /** Another connection needs a socket slot and none is free: the least recently used idle pool's sockets go. */
  #freeIdleSocket(): void {
    for (const route of this.#routes.values()) if (route.dropIdleSockets()) return;
  }

  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    const done = this.#end(false);
    if (callback) void done.then(() => callback());
    else return done;
  }

  override destroy(): Promise<void>;
  override destroy(err: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null, callback: () => void): void;
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const callback = typeof a === "function" ? a : b;
    const done = this.#end(true, typeof a === "function" ? null : (a ?? null));
    if (callback) void done.then(() => callback());
    else return done;
  }

  async #end(destroy: boolean, err: Error | null = null): Promise<void> {
    this.#closed = true;
    if (destroy) this.#destroyed = true;
    // close() lets what it accepted finish: a request still locating its server gets its pool first (the pools' close lets it run).
    else while (this.#routing.size > 0) await Promise.allSettled([...this.#routing]);
    const routes = [...this.#routes.values()];
    this.#routes.clear();
    await Promise.all(routes.map((r) => (destroy ? r.destroy(err ?? undefined) : r.close())));
    const closed = new ClientClosedError("Cannot open a connection: the dispatcher is closed");
    this.#shutdown.abort(closed);
    this.#host.limiter.close(closed);
    await this.#book.flush(); // pins and known servers outlive the process
  }
}

/** Delivers an error to a handler of either of undici's handler interfaces. */
function fail(handler: Handler, err: Error): void {
  // As FailoverHandler does for a request that never reached a connection: its abort first, then the error.
  const h = legacyHandler(handler);
  h.onConnect?.(() => {}, {});
  h.onError?.(err);
}

/** Creates a dispatcher for undici's `request`/`fetch`, or the global `fetch()` through `setGlobalDispatcher` (docs/client.md). */
export function createDispatcher(options: DispatcherOptions = {}): PerilinkDispatcher {
  return new PerilinkDispatcher(options);
}
