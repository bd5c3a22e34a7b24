import type net from "node:net";
import { createLogger, throttledLogger, type Logger } from "../logger.ts";
import { WireError } from "../protocol/constants.ts";
import { encodeServerRefusal } from "../protocol/handshake.ts";
import { keyFingerprint } from "../protocol/keys.ts";
import { detectRuntime } from "../runtime/runtime.ts";
import { TARGET } from "../target.ts";
import { loadApp, type LoadedApp, type SessionApp } from "./app.ts";
import { BufferBudget } from "./buffer_budget.ts";
import { resolveConfig, type Dispatch, type ServerConfig, type ServerConfigInput } from "./config.ts";
import { ControlServer, type ControlHandler } from "./control_server.ts";
import { loadOrCreateIdentity, type Identity } from "./identity.ts";
import type { InterfaceAddress } from "./interface_addresses.ts";
import type { ServerLimits } from "./limits.ts";
import { ListenerSet, type Endpoint } from "./listener_set.ts";
import type { ListenSpec } from "./listen_spec.ts";
import { ProbeResponder } from "./probe_responder.ts";
import { RateLimiter } from "./rate_limiter.ts";
import { RawHost } from "./raw_host.ts";
import { ServerSession, type SessionHost } from "./session.ts";
import type { SessionFlow } from "./session_flow.ts";
import { ServerStats } from "./server_stats.ts";
import { AcceptSemaphore } from "../supervisor/accept_semaphore.ts";
import type { DrainingGeneration } from "../supervisor/handoff_protocol.ts";
import { takeInheritedSockets, type InheritedSocket } from "../supervisor/inherited_sockets.ts";
import { takeActivationSockets } from "./systemd_sockets.ts";
import type { ServerEvents } from "./server_events.ts";
import { peerKey } from "./peer_key.ts";
import { readStartContext, Takeover } from "../supervisor/takeover.ts";
import { Upgrader, type RespawnSpec, type UpgradeRequest, type UpgradeResult } from "../supervisor/upgrader.ts";
import { ServiceGroup, type ConnectionGroup, type WorkerStatus } from "../supervisor/service_group.ts";
import { SEMAPHORE_START_TIMEOUT_MS, upgradeHostFor, type ServingProcess } from "../supervisor/upgrade_host.ts";
import { ConfigError, UpgradeError } from "../errors.ts";

export interface StartServerOptions extends ServerConfigInput {
  /** A loaded app object instead of a name or path (embedding, tests). */
  appObject?: SessionApp | { createServer(): net.Server };
  logger?: Logger;
  /** Generation number of this process; 1 for a fresh start. */
  generation?: number;
  /** Whether to open the control socket in the state directory (default true). */
  control?: boolean;
  /** Source of the device's addresses for `auto` entries (tests inject a list). */
  interfaces?: () => InterfaceAddress[];
  /** How to start a new program version for `upgrade()` (set by `perilink serve`). */
  respawn?: RespawnSpec;
  /**
   * @internal `false` in a service process of a group (S5): it opens no
   * listener of its own; its manager passes it connections or listening sockets.
   */
  listeners?: boolean;
  /** Told about upgrades and drains (the systemd notifier). */
  events?: ServerEvents;
}

export interface ListenerStatus {
  address: string;
  port: number;
  transport: "tcp" | "udp";
}

export interface ServerStatus {
  pid: number;
  generation: number;
  serverId: string;
  keyFingerprint: string;
  runtime: string;
  target: string;
  app: string;
  mode: "session" | "raw";
  accepting: boolean;
  listeners: ListenerStatus[];
  sessions: number;
  inflight: number;
  /** Bytes held for frames in progress and unsent output over all sessions (limit: `limits.maxBufferedBytes`). */
  bufferedBytes: number;
  uptimeMs: number;
  counters: Record<string, number>;
  /** Older generations that handed over to this process and are still draining. */
  draining: DrainingGeneration[];
  /** The upgrade under way, if any. */
  upgrade: { pid: number | null; forMs: number } | null;
  /** True once this process has handed over to a newer generation. */
  handedOver: boolean;
  /** How service processes get connections (S5); "single" when this process serves alone. */
  dispatch: Dispatch | "single";
  /** The group's service processes (S5); empty when this process serves alone. */
  workers: WorkerStatus[];
}

/** Extra parts `startServer()` wires in. */
interface ServerParts {
  /** The listen entries with the ports an older generation chose for `…:0` (default: `config.listen`). */
  listen?: ListenSpec[];
  interfaces?: () => InterfaceAddress[];
  /** Bind TCP with SO_REUSEPORT (Deno: how an upgrade binds the ports alongside the old process). */
  reusePort?: boolean;
  /** Bind the UDP responders only once the old process has let go of them. */
  deferUdp?: boolean;
  inherited?: InheritedSocket[];
  semaphore?: AcceptSemaphore | null;
  respawn?: RespawnSpec;
  /** This process manages service processes that serve its connections (S5). */
  group?: ConnectionGroup | null;
  events?: ServerEvents;
}

/** How long a refused connection may stay half-open to read the refusal. */
const REFUSAL_LINGER_MS = 1000;

/**
 * A perilink server: identity (S1), multi-address listeners with UDP identify
 * responders (S2), and either multiplexed sessions (S3) or a hosted raw
 * `node:net` server (S6). Create one with `startServer()`.
 */
export class PerilinkServer implements SessionHost, ServingProcess {
  readonly identity: Identity;
  readonly generation: number;
  readonly limits: ServerLimits;
  readonly log: Logger;
  /** SessionHost: for events a peer can cause at will (at most one line a second each). */
  readonly peerLog: Logger;
  /** New sessions per peer and second (`limits.sessionRatePerPeer`): each handshake costs a signature. */
  #sessionRate: RateLimiter | null;
  readonly stats = new ServerStats();
  readonly writeSlabBytes = TARGET.writeSlabBytes;
  readonly config: ServerConfig;

  #app: LoadedApp;
  #raw: RawHost | null;
  #listeners: ListenerSet;
  #probes: ProbeResponder;
  #control: ControlServer | null = null;
  #sessions = new Set<ServerSession>();
  readonly budget: BufferBudget;
  /** Sessions that gave up their slot to a newcomer and are closing. */
  #evicted = new Set<ServerSession>();
  /** Open sessions by `peerKey()` (IPv4 address, IPv6 /64), for `maxSessionsPerPeer`. */
  #perPeer = new Map<string, number>();
  #accepting = false;
  #rescanTimer: ReturnType<typeof setInterval> | null = null;
  #drained: Promise<void> | null = null;
  #startedAt = Date.now();
  #parts: ServerParts;
  #semaphore: AcceptSemaphore | null;
  #group: ConnectionGroup | null;
  #upgrader: Upgrader | null;
  #takeover: Takeover | null = null;
  #controlHandlers: Record<string, ControlHandler> | null = null;
  /** Set while draining: called when the last session closes. */
  #noSessions: (() => void) | null = null;

  /** Use `startServer()`. */
  constructor(config: ServerConfig, identity: Identity, app: LoadedApp, log: Logger, generation: number, parts: ServerParts = {}) {
    this.config = config;
    this.identity = identity;
    this.generation = generation;
    this.limits = config.limits;
    this.budget = new BufferBudget(config.limits.maxBufferedBytes, () => flowsOf(this.#sessions), () => this.#sessions.size);
    this.log = log;
    this.peerLog = throttledLogger(log);
    this.#sessionRate =
      config.limits.sessionRatePerPeer > 0
        ? new RateLimiter({ ratePerSecond: config.limits.sessionRatePerPeer, burst: config.limits.sessionBurstPerPeer, maxSources: config.probe.trackedSources })
        : null;
    this.#app = app;
    this.#raw = app.kind === "raw" ? new RawHost(app.server, this.stats, log) : null;
    this.#probes = new ProbeResponder(identity, () => this.generation, config.probe, this.stats, log);
    this.#parts = parts;
    this.#semaphore = parts.semaphore ?? null;
    this.#group = parts.group ?? null;
    this.#upgrader = parts.respawn
      ? new Upgrader(upgradeHostFor(this, this.#semaphore, () => this.#takeover?.draining() ?? []), parts.respawn)
      : null;
    this.#listeners = this.#newListenerSet(parts.inherited ?? []);
  }

  #newListenerSet(inherited: InheritedSocket[], specs = this.#parts.listen ?? this.config.listen): ListenerSet {
    return new ListenerSet(
      specs,
      {
        onConnection: (socket, ep) => this.#onConnection(socket, ep),
        onDatagram: (msg, rinfo, udp) => this.#probes.onDatagram(msg, rinfo, udp),
        onRemoved: (ep) => this.#onAddressRemoved(ep),
      },
      this.log,
      {
        // Sessions answer what runs after a client's FIN; a raw app keeps its own server's choice.
        allowHalfOpen: this.allowHalfOpen,
        inherited,
        reusePort: this.#parts.reusePort ?? false,
        // A manager passes accepted sockets on unread.
        pauseOnConnect: this.#group !== null,
        deferUdp: inherited.length === 0 && (this.#parts.deferUdp ?? false),
        ...(this.#parts.interfaces ? { interfaces: this.#parts.interfaces } : {}),
      },
    );
  }

  get serverId(): string {
    return this.identity.serverId;
  }

  get app(): SessionApp {
    if (this.#app.kind !== "session") throw new TypeError("raw-mode server has no session app");
    return this.#app.app;
  }

  get accepting(): boolean {
    return this.#accepting;
  }

  /** Whether accepted sockets stay writable after the client's FIN (sessions yes; a raw app decides). */
  get allowHalfOpen(): boolean {
    const app = this.#app;
    return app.kind === "raw" ? Boolean((app.server as { allowHalfOpen?: boolean }).allowHalfOpen) : true;
  }

  /** @internal Serves a connection accepted elsewhere (a service process given it by its manager, S5). */
  serveConnection(socket: net.Socket): void {
    this.#onConnection(socket, null);
  }

  /**
   * @internal Called by `startServer()`. A fresh start takes the control
   * socket (refusing a second server on the state directory), the accept
   * semaphore, then its listeners. A process started by an upgrade adopts the
   * inherited listeners first, takes over through the semaphore, and only
   * then replaces the control socket.
   */
  async start(control: boolean, takeover: Takeover | null): Promise<void> {
    const handlers: Record<string, ControlHandler> = {
      status: () => this.status(),
      upgrade: (req) => this.upgrade(parseUpgradeRequest(req)),
    };
    this.#controlHandlers = control ? handlers : null;
    if (takeover) {
      await this.#listeners.start();
      this.#takeover = takeover;
      await takeover.run(this.#semaphore, async () => {
        await this.#listeners.activate();
        await this.#group?.listening(this.#listeners);
        this.#accepting = true;
        // The old process closed its control socket before answering; the path is ours now.
        if (control) this.#control = await ControlServer.listen(this.config.stateDir, handlers, this.log, { replace: true });
      }, this.generation);
    } else {
      if (control) this.#control = await ControlServer.listen(this.config.stateDir, handlers, this.log);
      try {
        await this.#semaphore?.acquire(SEMAPHORE_START_TIMEOUT_MS);
        await this.#listeners.start();
        await this.#listeners.activate(); // sockets systemd passed, if any
        await this.#group?.listening(this.#listeners);
      } catch (err) {
        this.#semaphore?.release();
        await this.#control?.close();
        throw err;
      }
    }
    this.#accepting = true;
    this.#startRescan();
    this.log.info("server_started", {
      serverId: this.serverId,
      generation: this.generation,
      pid: process.pid,
      app: this.#app.name,
      mode: this.#app.kind,
      listeners: this.#listeners.endpoints().length,
      takeover: takeover !== null,
    });
  }

  #startRescan(): void {
    if (this.config.rescanIntervalMs > 0 && this.config.listen.some((s) => s.kind === "auto")) {
      this.#rescanTimer = setInterval(() => void this.rescan(), this.config.rescanIntervalMs);
      this.#rescanTimer.unref?.();
    }
  }

  /**
   * Replaces this process with a new program version without closing a port
   * (S4). Resolves once the new process accepts; this one then drains and
   * `retired` resolves. Throws `UpgradeError` when refused or rolled back.
   */
  upgrade(req: UpgradeRequest = {}): Promise<UpgradeResult> {
    if (!this.#upgrader) {
      return Promise.reject(new UpgradeError("PERILINK_UPGRADE_UNSUPPORTED", 'Cannot upgrade: this server was not started by "perilink serve", so there is no program to start'));
    }
    if (this.#drained && !this.#upgrader.handedOver) {
      return Promise.reject(new UpgradeError("PERILINK_UPGRADE_FAILED", "Cannot upgrade: the server is shutting down"));
    }
    const events = this.#parts.events;
    // A request refused at once (one under way, or handed over) starts nothing to report.
    if (!events || this.#upgrader.inProgress || this.#upgrader.handedOver) return this.#upgrader.upgrade(req);
    events.upgradeStarted?.({ generation: this.generation + 1 });
    return this.#upgrader.upgrade(req).then(
      (result) => {
        events.upgradeFinished?.(result);
        return result;
      },
      (err: Error) => {
        events.upgradeFailed?.(err);
        throw err;
      },
    );
  }

  /** Resolves once this process has handed over to a new one and finished draining. */
  get retired(): Promise<void> {
    return this.#upgrader?.done ?? new Promise(() => {});
  }

  /** @internal ServingProcess: the listening sockets, named, for a new process. */
  handoffSockets(): { name: string; fd: number }[] {
    return this.#listeners.handoffSockets();
  }

  /** @internal ServingProcess: closes the listeners and the control socket (its path is unlinked before a new process binds it). */
  async stopListening(): Promise<void> {
    this.#accepting = false;
    await this.#group?.stopAccepting();
    if (this.#rescanTimer) clearInterval(this.#rescanTimer);
    await this.#listeners.close();
    await this.#control?.close();
    this.#control = null;
  }

  /** @internal ServingProcess: opens the control socket again after `stopListening()`. */
  async reopenControl(): Promise<void> {
    if (this.#controlHandlers && !this.#control) {
      this.#control = await ControlServer.listen(this.config.stateDir, this.#controlHandlers, this.log, { replace: true });
    }
  }

  /** @internal ServingProcess: binds the same ports as before, including those the kernel chose for port 0. */
  async listenAgain(): Promise<void> {
    this.#listeners = this.#newListenerSet([], this.#listeners.resolvedSpecs());
    await this.#listeners.start();
    await this.#group?.listening(this.#listeners);
    this.#accepting = true;
    this.#startRescan();
  }

  /** @internal ServingProcess: the port the kernel chose for each `…:0` entry, by the entry's text. */
  resolvedPorts(): Record<string, number> {
    const out: Record<string, number> = {};
    const resolved = this.#listeners.resolvedSpecs();
    this.config.listen.forEach((spec, i) => {
      if (spec.port === 0 && resolved[i]) out[this.config.listenText[i]!] = resolved[i]!.port;
    });
    return out;
  }

  /** @internal ServingProcess: drain progress, for the new process's `status`. */
  drainReport(): DrainingGeneration {
    return { generation: this.generation, pid: process.pid, inflight: this.#inflight(), sessions: this.#sessionCount() };
  }

  /** A manager's counters: its own (probes…), the requests its service processes served, and how connections reached them. */
  #groupCounters(): Record<string, number> {
    const g = this.#group!;
    const c = g.counters();
    return { ...this.stats.snapshot(), requests: g.totals().requests, connectionsPassed: c.passed, semaphoreTurns: c.turns };
  }

  #sessionCount(): number {
    return this.#group ? this.#group.totals().sessions : this.#raw ? this.#raw.connections : this.#sessions.size;
  }

  #inflight(): number {
    return this.#group ? this.#group.totals().inflight : this.stats.inflight;
  }

  /** The endpoints listening now (each has TCP and UDP on the same address and port). */
  endpoints(): Endpoint[] {
    return this.#listeners.endpoints();
  }

  /** Looks for new and vanished addresses now (also done periodically, and on SIGHUP by the CLI). */
  async rescan(): Promise<void> {
    await this.#listeners.rescan();
    // Semaphore dispatch: listeners for new addresses are parked too (only service processes accept).
    if (this.#accepting) await this.#group?.listening(this.#listeners);
  }

  status(): ServerStatus {
    const listeners: ListenerStatus[] = [];
    for (const ep of this.#listeners.endpoints()) {
      listeners.push({ address: ep.address, port: ep.port, transport: "tcp" }, { address: ep.address, port: ep.port, transport: "udp" });
    }
    return {
      pid: process.pid,
      generation: this.generation,
      serverId: this.serverId,
      keyFingerprint: keyFingerprint(this.identity.publicKey),
      runtime: `${detectRuntime().name} ${detectRuntime().version}`,
      target: TARGET.name,
      app: this.#app.name,
      mode: this.#app.kind,
      accepting: this.#accepting,
      listeners,
      sessions: this.#sessionCount(),
      inflight: this.#inflight(),
      bufferedBytes: this.budget.refresh(),
      uptimeMs: Date.now() - this.#startedAt,
      counters: this.#group ? this.#groupCounters() : this.stats.snapshot(),
      draining: this.#takeover?.draining() ?? [],
      upgrade: this.#upgrader?.inProgress
        ? { pid: this.#upgrader.inProgress.pid ?? null, forMs: Date.now() - this.#upgrader.inProgress.since }
        : null,
      handedOver: this.#upgrader?.handedOver ?? false,
      dispatch: this.#group?.dispatch ?? "single",
      workers: this.#group?.workers() ?? [],
    };
  }

  /**
   * Stops accepting (listeners closed), sends GOAWAY to every session, lets
   * every started request finish, then closes. Sessions still open at the
   * deadline are closed. Idempotent.
   */
  drain(timeoutMs: number = this.config.drainTimeoutMs): Promise<void> {
    this.#drained ??= this.#drain(timeoutMs);
    return this.#drained;
  }

  /** Same as `drain()` with the configured deadline. */
  close(): Promise<void> {
    return this.drain();
  }

  async #drain(timeoutMs: number): Promise<void> {
    const started = Date.now();
    // An upgrade that has not handed over yet would give the sockets to a new process
    // after this one stopped: cancel it (its process group is killed) before anything else.
    await this.#upgrader?.cancel("the server is shutting down");
    this.#accepting = false;
    if (this.#rescanTimer) clearInterval(this.#rescanTimer);
    await this.#listeners.close();
    this.log.info("drain_started", { sessions: this.#sessions.size, inflight: this.stats.inflight, timeoutMs });
    this.#parts.events?.drainStarted?.({
      sessions: this.#raw ? this.#raw.connections : this.#sessions.size,
      inflight: this.stats.inflight,
      timeoutMs,
      handedOver: this.#upgrader?.handedOver ?? false,
    });
    if (this.#group) {
      await this.#group.drain(timeoutMs);
    } else if (this.#raw) {
      await this.#raw.drain(timeoutMs);
    } else {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)));
      for (const s of this.#sessions) void s.goAway();
      // Sessions accepted from here on get GOAWAY after their hello (#onConnection).
      const allClosed = new Promise<void>((r) => (this.#noSessions = r));
      if (this.#sessions.size === 0) this.#noSessions?.();
      await Promise.race([allClosed, deadline]);
      clearTimeout(timer);
      if (this.#sessions.size > 0) {
        this.log.warn("drain_deadline", { mode: "session", destroyed: this.#sessions.size, inflight: this.stats.inflight });
        for (const s of this.#sessions) s.destroy();
      }
    }
    await this.#control?.close();
    this.#semaphore?.release();
    this.#parts.events?.drainFinished?.();
    this.log.info("drain_finished", { ms: Date.now() - started });
  }

  /**
   * The server is full: gives the slot of the oldest session that does nothing
   * with its own (SESSION_EVICT_AFTER_MS in its handshake, or open without a
   * channel or request) to the newcomer. Sessions doing work are never touched,
   * so peers that hold sessions open idle cannot lock out clients that use them.
   */
  #evictIdle(): boolean {
    const now = performance.now();
    for (const s of this.#sessions) {
      if (this.#evicted.has(s) || !s.idleSince(now, SESSION_EVICT_AFTER_MS)) continue;
      this.#evicted.add(s);
      this.stats.sessionsEvicted++;
      s.evict();
      return true;
    }
    return false;
  }

  /** SessionHost: a session's socket closed. */
  sessionClosed(session: ServerSession): void {
    this.#evicted.delete(session);
    if (!this.#sessions.delete(session)) return;
    this.stats.sessionsOpen--;
    if (this.#sessions.size === 0) this.#noSessions?.();
    const key = peerKey(session.remoteAddress);
    const n = (this.#perPeer.get(key) ?? 1) - 1;
    if (n <= 0) this.#perPeer.delete(key);
    else this.#perPeer.set(key, n);
  }

  /**
   * Sessions that arrived on an address the device no longer has cannot carry
   * traffic any more: close them now, so their clients fail over at once
   * instead of waiting for TCP to time out.
   */
  #onAddressRemoved(ep: Endpoint): void {
    for (const s of this.#sessions) {
      if (s.localAddress.split("%")[0] === ep.address.split("%")[0] && s.localPort === ep.port) s.destroy();
    }
  }

  #onConnection(socket: net.Socket, _ep: Endpoint | null): void {
    // A connection the kernel handed us is served even while we stop accepting:
    // destroying it would reset a client that did nothing wrong.
    if (this.#group) {
      this.#group.accept(socket);
      return;
    }
    if (this.#raw) {
      this.#raw.accept(socket);
      return;
    }
    const peer = socket.remoteAddress ?? "";
    const key = peerKey(peer);
    const perPeer = this.#perPeer.get(key) ?? 0;
    // A slot is freed by eviction only for a newcomer that every other limit admits.
    const why =
      perPeer >= this.limits.maxSessionsPerPeer
        ? "maxSessionsPerPeer"
        : this.budget.over()
          ? "maxBufferedBytes"
          : this.#sessionRate !== null && !this.#sessionRate.take(key)
            ? "sessionRatePerPeer"
            : this.#sessions.size - this.#evicted.size >= this.limits.maxSessions && !this.#evictIdle()
              ? "maxSessions"
              : null;
    if (why !== null) {
      this.stats.sessionsRefused++;
      this.peerLog.info("session_refused", { peer, why });
      socket.on("error", () => {});
      socket.resume();
      socket.end(encodeServerRefusal(WireError.ServerBusy));
      setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref?.();
      return;
    }
    this.#perPeer.set(key, perPeer + 1);
    const session = new ServerSession(socket, this);
    this.#sessions.add(session);
    this.stats.sessionsOpen++;
    this.stats.sessionsAccepted++;
    if (this.#drained) void session.goAway();
  }
}

/**
 * Starts a server: validates the configuration, loads (or creates) the
 * identity, loads the app, opens the control socket and every listener.
 */
export async function startServer(options: StartServerOptions = {}): Promise<PerilinkServer> {
  const { appObject, logger, generation, control = true, interfaces, respawn, listeners = true, events, ...input } = options;
  const config = resolveConfig(input);
  const log = logger ?? createLogger(config.logLevel);
  const runtime = detectRuntime();
  // Only a process started by `perilink serve` reads how it was started; an embedded server is always fresh.
  const ctx = respawn ? readStartContext() : { handoff: null, generation: 1, timeoutMs: 0, ports: {} };
  // An upgraded process keeps the ports the kernel chose for `…:0` entries in the old one. The
  // config keeps port 0, so that this process in turn hands those ports on at its own upgrade.
  const listen = config.listen.map((spec, i) => {
    const port = ctx.ports[config.listenText[i]!];
    return spec.port === 0 && port !== undefined ? { ...spec, port } : spec;
  });
  // Sockets from a perilink parent (upgrade), else from systemd (socket activation, `perilink serve` only).
  const inherited = ctx.handoff === "inherit" ? takeInheritedSockets().sockets : respawn ? takeActivationSockets() : [];
  const identity = await loadOrCreateIdentity(config.stateDir);
  const app: LoadedApp = appObject
    ? "createServer" in appObject && typeof appObject.createServer === "function"
      ? { kind: "raw", name: "embedded", server: appObject.createServer() }
      : { kind: "session", name: "embedded", app: appObject as SessionApp }
    : await loadApp(config.app);
  // The accept semaphore guards handed-over sockets; with SO_REUSEPORT each process has its own.
  const semaphore = runtime.handoff === "inherit" && listeners ? AcceptSemaphore.forStateDir(config.stateDir) : null;
  // A manager (S5) starts its service processes before it accepts, or takes over, anything.
  const managed = listeners && config.workers.max > 1;
  if (managed && !respawn) {
    throw new ConfigError('Cannot start service processes: only "perilink serve" knows the program to start them with; leave "workers" at 1 when embedding');
  }
  const group = managed ? await ServiceGroup.start(config, respawn!, generation ?? ctx.generation, log) : null;
  const server = new PerilinkServer(config, identity, app, log, generation ?? ctx.generation, {
    group,
    listen: listeners ? listen : [],
    interfaces,
    inherited,
    semaphore,
    respawn,
    events,
    reusePort: runtime.handoff === "reuseport",
    deferUdp: ctx.handoff === "reuseport",
  });
  try {
    await server.start(control, ctx.handoff ? new Takeover(process, log, ctx.timeoutMs) : null);
  } catch (err) {
    await group?.drain(0);
    throw err;
  }
  return server;
}

/** The budget's holders: each session's flow control. */
function* flowsOf(sessions: Iterable<ServerSession>): Generator<SessionFlow> {
  for (const s of sessions) yield s.flow;
}

/** A full server gives the slot of a session that has done nothing with it for this long to a newcomer. */
const SESSION_EVICT_AFTER_MS = 1000;

function parseUpgradeRequest(req: Record<string, unknown>): UpgradeRequest {
  const out: UpgradeRequest = {};
  if (typeof req.program === "string") out.program = req.program;
  if (typeof req.app === "string") out.app = req.app;
  if (typeof req.timeoutMs === "number" && Number.isInteger(req.timeoutMs) && req.timeoutMs > 0) out.timeoutMs = req.timeoutMs;
  return out;
}
