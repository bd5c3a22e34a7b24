import type net from "node:net";
import { throttledLogger, type Logger } from "../logger.ts";
import { keyFingerprint } from "../protocol/keys.ts";
import { detectRuntime } from "../runtime/runtime.ts";
import { TARGET } from "../target.ts";
import { UpgradeError } from "../errors.ts";
import type { LoadedApp, SessionApp } from "./app.ts";
import type { ServerConfig } from "./config.ts";
import { serviceTotals, type ConnectionService } from "./connection_service.ts";
import { ControlPlane } from "./control_plane.ts";
import { memoryFigures } from "../runtime/memory_figures.ts";
import { renderServerMetrics } from "./server_metrics.ts";
import { startDiscovery, type Advertiser } from "./discovery.ts";
import type { Identity } from "./identity.ts";
import type { InheritedSocket } from "./inherited_socket.ts";
import type { ServerLimits } from "./limits.ts";
import { ListenerSet, type Endpoint, type ParkedSocket } from "./listener_set.ts";
import { ProbeResponder } from "./probe_responder.ts";
import { RawHost } from "./raw_host.ts";
import { SEMAPHORE_START_TIMEOUT_MS, reportedUpgrade, type AcceptGate, type DrainingGeneration, type ServingProcess } from "./server_handoff.ts";
import type { StartupTakeover, UpgradeDriver, UpgradeRequest, UpgradeResult } from "./server_handoff.ts";
import type { ServerParts } from "./server_parts.ts";
import type { LastUpgrade, ListenerStatus, ServerStatus } from "./server_status.ts";
import { VERSION } from "../version.ts";
import { msError } from "../duration.ts";
import { ServerStats } from "./server_stats.ts";
import { TrustedKeys } from "./trusted_keys.ts";
import { SessionService } from "./session_service.ts";

export type { ListenerStatus, ServerStatus, ServerParts };


/**
 * A perilink server: identity (S1), multi-address listeners with UDP identify
 * responders (S2), and either multiplexed sessions (S3) or a hosted raw
 * `node:net` server (S6). Create one with `startServer()`.
 */
export class PerilinkServer implements ServingProcess {
  readonly identity: Identity;
  readonly generation: number;
  readonly limits: ServerLimits;
  readonly log: Logger;
  readonly stats = new ServerStats();
  readonly config: ServerConfig;

  #app: LoadedApp;
  /** How accepted connections are served: sessions, a raw app, or service processes. */
  #service: ConnectionService;
  #listeners: ListenerSet;
  #probes: ProbeResponder;
  /** The control socket and the metrics listener, once start() opened them. */
  #plane: ControlPlane | null = null;
  #metricsSocket: InheritedSocket | null;
  /** TCP sockets kept open after handing over, while the new process is on probation. */
  #kept: InheritedSocket[] = [];
  #accepting = false;
  /** start() finished: the app is ready and the listeners accept. */
  #started = false;
  #rescanTimer: ReturnType<typeof setInterval> | null = null;
  #drained: Promise<void> | null = null;
  #startedAt = Date.now();
  #lastUpgrade: LastUpgrade | null = null;
  #parts: ServerParts;
  #gate: AcceptGate | null;
  #upgrader: UpgradeDriver | null;
  #takeover: StartupTakeover | null;
  #discovery: Advertiser | null = null;
  #overtaken = (): boolean | null => (this.#accepting ? null : !(this.#upgrader?.handedOver ?? false)); // a stop or handover while discovery started

  /** Use `startServer()`. */
  constructor(config: ServerConfig, identity: Identity, app: LoadedApp, log: Logger, generation: number, parts: ServerParts = {}) {
    this.config = config;
    this.identity = identity;
    this.generation = generation;
    this.limits = config.limits;
    this.log = log;
    this.#app = app;
    this.#service =
      parts.group ??
      (app.kind === "raw"
        ? new RawHost(app.server, this.stats, log)
        : new SessionService({
            identity,
            generation,
            limits: config.limits,
            app: app.app,
            log,
            peerLog: throttledLogger(log),
            stats: this.stats,
            writeSlabBytes: TARGET.writeSlabBytes,
            trackedSources: config.probe.trackedSources,
            access: config.access === "keys" ? new TrustedKeys(config.stateDir, log) : null,
            stateDir: config.stateDir,
          }));
    this.#probes = new ProbeResponder(identity, () => this.generation, config.probe, this.stats, log);
    this.#parts = parts;
    this.#gate = parts.gate ?? null;
    this.#takeover = parts.takeover ?? null;
    if (this.#takeover) this.#lastUpgrade = { outcome: "started this process", at: new Date().toISOString(), generation: this.generation };
    this.#upgrader = parts.upgrades ? parts.upgrades(this, () => this.#takeover?.draining() ?? []) : null;
    const inherited = parts.inherited ?? [];
    this.#metricsSocket = ControlPlane.metricsSocket(config.metrics, inherited);
    this.#listeners = this.#newListenerSet(inherited.filter((i) => i !== this.#metricsSocket));
  }

  #newListenerSet(inherited: InheritedSocket[], specs = this.#parts.listen ?? this.config.listen, retainInherited = false): ListenerSet {
    return new ListenerSet(
      specs,
      {
        // A connection the kernel handed us is served even while we stop accepting:
        // destroying it would reset a client that did nothing wrong.
        onConnection: (socket) => this.#service.accept(socket),
        onDatagram: (msg, rinfo, udp) => this.#probes.onDatagram(msg, rinfo, udp),
        onRemoved: (ep) => this.#service.addressRemoved(ep),
      },
      this.log,
      {
        // Sessions answer what runs after a client's FIN; a raw app keeps its own server's choice.
        allowHalfOpen: this.allowHalfOpen,
        inherited,
        retainInherited,
        reusePort: this.#parts.reusePort ?? false,
        // A manager passes accepted sockets on unread.
        pauseOnConnect: this.#service.pauseOnConnect,
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
    this.#service.accept(socket);
  }

  /**
   * @internal Called by `startServer()`. A fresh start takes the control socket (refusing a second server on the
   * state directory), the accept semaphore, then its listeners. A process started by an upgrade adopts the inherited
   * listeners first, takes over through the semaphore, and only then replaces the control socket.
   */
  async start(control: boolean): Promise<void> {
    const takeover = this.#takeover;
    const plane = (this.#plane = ControlPlane.forServer(this, control, this.#metricsSocket));
    if (takeover) {
      await this.#parts.lifecycle?.ready(this.limits.readyTimeoutMs); // the old process serves meanwhile
      await this.#listeners.start();
      await takeover.run(this.#gate, async () => {
        this.#service.adoptVouched?.(takeover.vouched());
        this.stats.carryOver(takeover.counters(), performance.now());
        takeover.onDrainedCounters?.((final, first) => this.stats.addGrowth(final, first));
        await this.#listeners.activate();
        await this.#service.listening(this.#listeners);
        this.#accepting = true;
        // The old process closed its control socket before answering; the path is ours now.
        await plane.openControl(true);
        await plane.openMetrics(true);
      }, this.generation);
    } else {
      await plane.openControl(false);
      try {
        await this.#parts.lifecycle?.ready(this.limits.readyTimeoutMs);
        await this.#gate?.acquire(SEMAPHORE_START_TIMEOUT_MS);
        await this.#listeners.start();
        await this.#listeners.activate(); // sockets systemd passed, if any
        await this.#service.listening(this.#listeners);
        await plane.openMetrics(false);
      } catch (err) {
        this.#gate?.release();
        await this.#listeners.close();
        await plane.close();
        throw err;
      }
    }
    this.#accepting = true;
    this.#started = true;
    this.#startRescan();
    this.#discovery = await startDiscovery(this.config.discovery, this, this.#overtaken); // DNS-SD (discovery.ts)
    const started = { serverId: this.serverId, generation: this.generation, pid: process.pid, app: this.#app.name, mode: this.#app.kind };
    this.log.info("server_started", { ...started, listeners: this.#listeners.endpoints().length, takeover: takeover !== null });
  }

  #startRescan(): void {
    if (this.config.rescanIntervalMs > 0 && this.config.listen.some((s) => s.kind === "auto")) {
      this.#rescanTimer = setInterval(() => void this.rescan(), this.config.rescanIntervalMs);
      this.#rescanTimer.unref?.();
    }
  }

  /**
   * Replaces this process with a new program version without closing a port (S4). Resolves once the new process
   * accepts; this one then drains and `retired` resolves. Throws `UpgradeError` when refused or rolled back.
   */
  upgrade(req: UpgradeRequest = {}): Promise<UpgradeResult> {
    if (!this.#upgrader) {
      return Promise.reject(new UpgradeError("PERILINK_UPGRADE_UNSUPPORTED", 'Cannot upgrade: this server was not started by "perilink serve", so there is no program to start'));
    }
    if (this.#drained && !this.#upgrader.handedOver) {
      return Promise.reject(new UpgradeError("PERILINK_UPGRADE_FAILED", "Cannot upgrade: the server is shutting down"));
    }
    const upgrader = this.#upgrader;
    // Not while this process starts (its app's ready() runs), nor while the one before it may still take the ports back.
    if (!this.#started && !this.#drained) return Promise.reject(new UpgradeError("PERILINK_UPGRADE_IN_PROGRESS", "Cannot upgrade: the server is still starting (its app's ready() runs); try again once it accepts"));
    if (this.#takeover?.predecessorSettled && !this.#takeover.predecessorSettled()) {
      return Promise.reject(new UpgradeError("PERILINK_UPGRADE_IN_PROGRESS", "Cannot upgrade: the previous process is still on probation (probationMs) and may take the ports back; try again in a moment"));
    }
    // A request refused at once (one under way, or handed over) starts nothing to report.
    if (upgrader.inProgress || upgrader.handedOver) return upgrader.upgrade(req);
    return reportedUpgrade(() => upgrader.upgrade(req), this.generation + 1, this.#parts.events, (u) => (this.#lastUpgrade = u));
  }

  /** Resolves once this process has handed over to a new one and finished draining. */
  get retired(): Promise<void> {
    return this.#upgrader?.done ?? new Promise(() => {});
  }

  /** @internal ServingProcess: the listening sockets, named, for a new process. */
  handoffSockets(): { name: string; fd: number }[] {
    return [...this.#listeners.handoffSockets(), ...(this.#plane?.handoffSockets() ?? [])];
  }

  /** The server's metrics as OpenMetrics text (`perilink metrics`, `/metrics`). */
  metrics(): string {
    const { latency, refusedBy } = serviceTotals(this.#service, this.stats);
    return renderServerMetrics({ status: this.status(), memory: memoryFigures(), latency, refusedBy, limits: this.limits });
  }

  /** @internal ServingProcess: the totals a new process continues (those of the service processes too). */
  handoffCounters(): Record<string, unknown> {
    const t = serviceTotals(this.#service, this.stats);
    return { ...t.counters, latency: t.latency.snapshot(), refusedBy: t.refusedBy };
  }

  /** @internal ServingProcess: closes the listeners (`keep`: keeps their TCP sockets) and the control socket (its path is unlinked before a new process binds it). */
  async stopListening(keep?: (server: net.Server) => Promise<ParkedSocket>): Promise<void> {
    this.#accepting = false;
    await this.#service.stopAccepting();
    if (this.#rescanTimer) clearInterval(this.#rescanTimer);
    await this.#discovery?.close(false); // no goodbye: the new process takes the advertising over
    this.#kept = keep ? await this.#listeners.closeKeeping(keep) : [];
    if (!keep) await this.#listeners.close();
    await this.#plane?.close();
  }

  /** @internal ServingProcess: closes the sockets `stopListening(keep)` kept. */
  closeKept(): void {
    for (const k of this.#kept.splice(0)) k.handle?.close();
  }

  /** @internal ServingProcess: opens the control socket again after `stopListening()`. */
  async reopenControl(): Promise<void> {
    await this.#plane?.openControl(true);
  }

  /** @internal ServingProcess: accepts again on the kept sockets, and binds the rest on the same ports as before (those the kernel chose for port 0 too). */
  async listenAgain(): Promise<boolean> {
    const kept = this.#kept.splice(0);
    this.#listeners = this.#newListenerSet(kept, this.#listeners.resolvedSpecs(), true);
    try {
      await this.#listeners.start();
    } catch (err) {
      this.#kept = kept; // still open, the connections queued on them too: the retry takes them again
      throw err;
    }
    await this.#listeners.activate();
    await this.#service.listening(this.#listeners);
    this.#accepting = true;
    this.#started = true;
    this.#startRescan();
    // Metrics are not worth failing a rollback for: the port group serves again either way.
    await this.#plane?.openMetrics(true).catch((err: unknown) => this.log.warn("metrics_listener_failed", { error: err }));
    this.#discovery = await startDiscovery(this.config.discovery, this, this.#overtaken);
    return kept.length > 0;
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

  /** @internal ServingProcess: the peers vouched for, for the new process. */
  vouchedPeers(): [string, number][] {
    return this.#service.vouchedPeers?.() ?? [];
  }

  /** @internal ServingProcess: the service processes' ids (`--workers`), which drain as a new group starts. */
  servicePids(): number[] {
    return this.#service.workers().flatMap((w) => (w.pid !== null && w.state !== "failed" ? [w.pid] : []));
  }

  /** @internal ServingProcess: drain progress, for the new process's `status`. */
  drainReport(): DrainingGeneration {
    return { generation: this.generation, pid: process.pid, inflight: this.#service.inflight, sessions: this.#service.connections };
  }

  /** Accepting, and (with service processes) one of them ready to serve: `/healthz`. */
  healthy(): boolean {
    return this.#accepting && (this.#service.dispatch === "single" || this.#service.workers().some((w) => w.state === "ready"));
  }

  /** The endpoints listening now (each has TCP and UDP on the same address and port). */
  endpoints(): Endpoint[] {
    return this.#listeners.endpoints();
  }

  /** Looks for new and vanished addresses now (also done periodically, and on SIGHUP by the CLI). */
  async rescan(): Promise<void> {
    await this.#listeners.rescan();
    this.#discovery?.changed();
    // Semaphore dispatch: listeners for new addresses are parked too (only service processes accept).
    if (this.#accepting) await this.#service.listening(this.#listeners);
  }

  status(): ServerStatus {
    const listeners: ListenerStatus[] = this.#listeners.endpoints().flatMap((ep) => (["tcp", "udp"] as const).map((transport) => ({ address: ep.address, port: ep.port, transport })));
    return {
      version: VERSION,
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
      sessions: this.#service.connections,
      inflight: this.#service.inflight,
      bufferedBytes: this.#service.bufferedBytes(),
      uptimeMs: Date.now() - this.#startedAt,
      counters: this.#service.counters(this.stats.snapshot()),
      draining: this.#takeover?.draining() ?? [],
      upgrade: this.#upgrader?.inProgress
        ? { pid: this.#upgrader.inProgress.pid ?? null, forMs: Date.now() - this.#upgrader.inProgress.since }
        : null,
      handedOver: this.#upgrader?.handedOver ?? false,
      lastUpgrade: this.#lastUpgrade,
      dispatch: this.#service.dispatch,
      workers: this.#service.workers(),
    };
  }

  /** Stops accepting (listeners closed), GOAWAY to every session, lets started requests finish, then closes (the rest at the deadline). Idempotent. */
  drain(timeoutMs: number = this.config.drainTimeoutMs): Promise<void> {
    const bad = this.#drained === null ? msError(timeoutMs, "drain()", "timeoutMs") : null; // refused before anything stops
    if (bad) return Promise.reject(bad);
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
    const handedOver = this.#upgrader?.handedOver ?? false;
    await this.#discovery?.close(!handedOver);
    await this.#listeners.close();
    const service = this.#service;
    this.log.info("drain_started", { sessions: service.connections, inflight: service.inflight, timeoutMs });
    this.#parts.events?.drainStarted?.({ sessions: service.connections, inflight: service.inflight, timeoutMs, handedOver });
    await Promise.all([service.drain(timeoutMs, handedOver), this.#parts.lifecycle?.drain(timeoutMs, handedOver)]);
    await this.#plane?.close();
    this.#gate?.release();
    this.#parts.events?.drainFinished?.();
    this.log.info("drain_finished", { ms: Date.now() - started });
  }
}
