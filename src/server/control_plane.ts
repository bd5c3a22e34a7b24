import http from "node:http";
import type net from "node:net";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { OPEN_METRICS_TYPE } from "../open_metrics.ts";
import { tcpServerFd } from "../runtime/handle_fds.ts";
import type { MetricsEndpoint } from "./config.ts";
import { ControlServer, type ControlHandler } from "./control_server.ts";
import { socketName, type InheritedSocket } from "./inherited_socket.ts";
import { parseUpgradeRequest, type UpgradeRequest } from "./server_handoff.ts";

/**
 * A scrape is one small GET: a peer slower than this with its headers, or
 * with its whole request, is cut off; at most this many connections at once
 * (a scraper or two, a health check), the rest refused.
 */
const HEADERS_TIMEOUT_MS = 3000;
const REQUEST_TIMEOUT_MS = 5000;
const MAX_METRICS_CONNECTIONS = 64;
/** Connections from one address at once: one peer cannot take every slot from the scrapers. */
const MAX_CONNECTIONS_PER_SOURCE = 8;
/** Requests one connection may make (keep-alive), and how long a rendered text is served again. */
const MAX_REQUESTS_PER_CONNECTION = 16;
const RENDER_CACHE_MS = 1000;

/** How long a process taking over waits for the old one to let go of the metrics port (where it cannot be handed over). */
const METRICS_BIND_WAIT_MS = 5000;

/** What the plane asks of its server (server.ts). */
export interface PlaneServer {
  readonly config: { stateDir: string; metrics: MetricsEndpoint | null };
  readonly log: Logger;
  status(): unknown;
  upgrade(req: UpgradeRequest): Promise<unknown>;
  metrics(): string;
  healthy(): boolean;
}

export interface ControlPlaneParts {
  /** The control socket's state directory and requests; null: no control socket (an embedded server). */
  control: { stateDir: string; handlers: Record<string, ControlHandler> } | null;
  metrics: MetricsEndpoint | null;
  /** The metrics text, and whether the server accepts now (`/healthz`). */
  render: () => string;
  healthy: () => boolean;
  log: Logger;
}

/**
 * The server's own endpoints beside the port group: the control socket
 * (`perilink status`, `upgrade`, `metrics`) and the optional HTTP listener
 * for `/metrics` and `/healthz` (`metrics.listen`). An upgrade hands the
 * metrics listener over open, as it does the port group, so a scrape during
 * one is answered by one process or the other.
 */
export class ControlPlane {
  #parts: ControlPlaneParts;
  #control: ControlServer | null = null;
  #http: http.Server | null = null;
  /** A metrics listener handed over by the old process, adopted at the first open. */
  #inherited: InheritedSocket | null;
  /** The last text rendered, served again for RENDER_CACHE_MS: a flood of scrapes renders once a second. */
  #cache: { at: number; text: string } | null = null;

  constructor(parts: ControlPlaneParts, inherited: InheritedSocket | null) {
    this.#parts = parts;
    this.#inherited = inherited;
  }

  /** A server's plane: `status`, `upgrade` and `metrics` on the control socket (when `control`), `/metrics` and `/healthz`. */
  static forServer(server: PlaneServer, control: boolean, inherited: InheritedSocket | null): ControlPlane {
    const handlers: Record<string, ControlHandler> = {
      status: () => server.status(),
      upgrade: (req) => server.upgrade(parseUpgradeRequest(req)),
      metrics: () => server.metrics(),
    };
    const c = server.config;
    return new ControlPlane({ control: control ? { stateDir: c.stateDir, handlers } : null, metrics: c.metrics, render: () => server.metrics(), healthy: () => server.healthy(), log: server.log }, inherited);
  }

  /** The inherited socket that is the metrics listener, if any: it belongs here, not to the port group. */
  static metricsSocket(metrics: MetricsEndpoint | null, inherited: InheritedSocket[]): InheritedSocket | null {
    if (!metrics) return null;
    return inherited.find((i) => i.transport === "tcp" && i.address === metrics.address && i.port === metrics.port) ?? null;
  }

  get hasControl(): boolean {
    return this.#parts.control !== null;
  }

  /** Opens the control socket; `replace`: this process takes over one an older generation let go of. */
  async openControl(replace: boolean): Promise<void> {
    const c = this.#parts.control;
    if (c && !this.#control) this.#control = await ControlServer.listen(c.stateDir, c.handlers, this.#parts.log, { replace });
  }

  /** Opens the metrics listener: the inherited one, else a new bind (waiting for an old process to let go, when `waitForPort`). */
  async openMetrics(waitForPort: boolean): Promise<void> {
    const m = this.#parts.metrics;
    if (!m || this.#http) return;
    const server = http.createServer(
      { headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, keepAliveTimeout: HEADERS_TIMEOUT_MS, connectionsCheckingInterval: 500, maxHeaderSize: 8192 },
      (req, res) => this.#serve(req, res),
    );
    server.maxConnections = MAX_METRICS_CONNECTIONS;
    server.maxRequestsPerSocket = MAX_REQUESTS_PER_CONNECTION;
    const perSource = new Map<string, number>();
    server.on("connection", (socket: net.Socket) => {
      const from = socket.remoteAddress ?? "";
      const n = (perSource.get(from) ?? 0) + 1;
      if (n > MAX_CONNECTIONS_PER_SOURCE) return void socket.destroy();
      perSource.set(from, n);
      socket.once("close", () => {
        const left = (perSource.get(from) ?? 1) - 1;
        if (left <= 0) perSource.delete(from);
        else perSource.set(from, left);
      });
    });
    server.on("error", (err) => this.#parts.log.warn("metrics_listener_error", { error: err }));
    const inherited = this.#inherited;
    this.#inherited = null;
    const deadline = Date.now() + (waitForPort ? METRICS_BIND_WAIT_MS : 0);
    for (;;) {
      try {
        await listen(server, inherited ? { fd: inherited.fd } : { host: m.address, port: m.port, exclusive: true });
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EADDRINUSE" && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        throw new ConfigError(`Cannot serve metrics on ${m.text}: ${(err as Error).message}; choose another "metrics.listen"`, { cause: err });
      }
    }
    server.unref?.();
    this.#http = server;
  }

  /** The metrics listener, named as the port group's sockets are, for a new process. */
  handoffSockets(): { name: string; fd: number }[] {
    const m = this.#parts.metrics;
    if (!m || !this.#http) return [];
    try {
      return [{ name: socketName("tcp", m.address, m.port), fd: tcpServerFd(this.#http) }];
    } catch {
      return []; // Deno: no descriptors; the new process binds once this one lets go
    }
  }

  async close(): Promise<void> {
    const h = this.#http;
    this.#http = null;
    if (h) await new Promise<void>((resolve) => {
      h.close(() => resolve());
      h.closeAllConnections?.();
    });
    await this.#control?.close();
    this.#control = null;
  }

  #serve(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = (req.url ?? "/").split("?")[0];
    res.setHeader("Cache-Control", "no-store");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain" }).end("only GET and HEAD\n");
    } else if (url === "/metrics") {
      let body: string;
      try {
        const now = performance.now();
        if (this.#cache === null || now - this.#cache.at > RENDER_CACHE_MS) this.#cache = { at: now, text: this.#parts.render() };
        body = this.#cache.text;
      } catch (err) {
        this.#parts.log.error("metrics_failed", { error: err });
        res.writeHead(500, { "Content-Type": "text/plain" }).end("metrics failed; see the server's log\n");
        return;
      }
      res.writeHead(200, { "Content-Type": OPEN_METRICS_TYPE }).end(req.method === "HEAD" ? undefined : body);
    } else if (url === "/healthz") {
      const ok = this.#parts.healthy();
      res.writeHead(ok ? 200 : 503, { "Content-Type": "text/plain" }).end(req.method === "HEAD" ? undefined : ok ? "accepting\n" : "not accepting\n");
    } else {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("see /metrics and /healthz\n");
    }
  }
}

function listen(server: http.Server, options: net.ListenOptions | { fd: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once("error", onError);
    server.listen(options as net.ListenOptions, () => {
      server.off("error", onError);
      resolve();
    });
  });
}
