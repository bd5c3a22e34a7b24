import { ClientStats } from "./client_stats.ts";
import { renderClientMetrics } from "./client_metrics.ts";
import path from "node:path";
import { checkMs, MAX_TIMER_MS } from "../duration.ts";
import { ClientClosedError } from "../errors.ts";
import { silentLogger, type Logger } from "../logger.ts";
import { isFingerprint, keyFingerprint } from "../protocol/keys.ts";
import { TARGET } from "../target.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import { loadOrCreateClientKey, processClientKey, type ClientKey } from "./client_key.ts";
import { IdentityBook } from "./identity_book.ts";
import { ServerIdentifier, type ServerWanted } from "./server_identifier.ts";
import type { TrustChoice } from "./known_servers.ts";
import { LineKeeper, type LineKeeping } from "./line/line_keeper.ts";
import { normalizePreference } from "./line/line_score.ts";
import { Link } from "./link.ts";
import { NameBook } from "./names/name_book.ts";
import type { AddressRow } from "./names/address_list.ts";
import { ServerEntry, type EntryHost } from "./server_entry.ts";
import { SocketLimiter } from "./socket_limiter.ts";
import {
  DEFAULT_LINE_REFRESH_MS,
  DEFAULT_LINE_SWITCH_MARGIN,
  LINE_MAX_HOPS,
  type ClientOptions,
  type ConnectOptions,
  type SessionRow,
  CLIENT_PIN_FILE,
} from "./client_options.ts";

export { CLIENT_PIN_FILE, DEFAULT_LINE_REFRESH_MS, DEFAULT_LINE_SWITCH_MARGIN, LINE_MAX_HOPS, type ClientOptions, type ConnectOptions, type SessionRow };

/**
 * The client session table (C1–C5, C9, C10): many applications' logical
 * connections (links), one session per server — not per address or name.
 */
/** The client options that are timers: each checked against what a timer can wait (identityTtlMs is an age, compared, never a timer). */
const MS_OPTIONS = ["waitTimeoutMs", "lingerMs", "probeTimeoutMs", "requestTimeoutMs", "silenceMs", "pingTimeoutMs"] as const;

export class PerilinkClient {
  #opts: Required<Omit<ClientOptions, "logger" | "firstStreamId" | "creditOnArrival" | "pinFile" | "stateDir" | "resolution" | "linePreference" | "lineRefreshMs" | "lineSwitchMargin" | "lineSystem">>;
  #lines: LineKeeping;
  #log: Logger;
  #book: IdentityBook;
  #limiter: SocketLimiter;
  #entries = new Map<string, ServerEntry<Link>>();
  #identifier: ServerIdentifier<Link>;
  #nextLink = 1;
  #nextSession = 1;
  #closed = false;
  #closing: Promise<void> | null = null;
  /** Aborted by close(): ends probes and handshakes in progress. */
  #shutdown = new AbortController();
  /** connect() calls in progress: close() resolves only after they have let go of their sockets. */
  #connecting = new Set<Promise<unknown>>();
  #entryHost: EntryHost;
  #stats = new ClientStats();
  #clientKey: Promise<ClientKey>;
  #names: NameBook;
  /** The numeric address each link's requested host stood for. */
  #linkAddress = new WeakMap<Link, string>();

  constructor(options: ClientOptions = {}) {
    const d = TARGET.client;
    this.#opts = {
      maxSessions: options.maxSessions ?? d.maxSessions,
      maxSessionsPerServer: options.maxSessionsPerServer ?? d.maxSessionsPerServer,
      maxWaiting: options.maxWaiting ?? d.maxWaiting,
      waitTimeoutMs: options.waitTimeoutMs ?? d.waitTimeoutMs,
      lingerMs: options.lingerMs ?? d.lingerMs,
      probeTimeoutMs: options.probeTimeoutMs ?? d.probeTimeoutMs,
      requestTimeoutMs: options.requestTimeoutMs ?? d.requestTimeoutMs,
      silenceMs: options.silenceMs ?? d.silenceMs,
      pingTimeoutMs: options.pingTimeoutMs ?? d.pingTimeoutMs,
      identityTtlMs: options.identityTtlMs ?? 30_000,
      maxKnownAddresses: options.maxKnownAddresses ?? 4096,
    };
    if (this.#opts.maxSessionsPerServer !== 1) throw new RangeError("maxSessionsPerServer: only 1 is supported");
    for (const name of MS_OPTIONS) checkMs(this.#opts[name], "client option", name, name === "silenceMs" ? 1 : 0);
    this.#log = options.logger ?? silentLogger;
    // The client's key and pins live in its state directory, as `perilink call`'s do (stateDir: false: neither).
    const stateDir = options.stateDir === false ? null : path.resolve(options.stateDir ?? defaultStateDir());
    this.#clientKey = stateDir === null ? Promise.resolve(processClientKey()) : loadOrCreateClientKey(stateDir);
    this.#clientKey.catch(() => {}); // reported by every connect, not as an unhandled rejection
    const pinFile = options.pinFile ?? (stateDir === null ? undefined : path.join(stateDir, CLIENT_PIN_FILE));
    this.#book = new IdentityBook(this.#opts.identityTtlMs, this.#opts.maxKnownAddresses, { pinFile });
    this.#book.onPinFileError = (err) => this.#log.warn("client_pin_file_write_failed", { error: err });
    this.#limiter = new SocketLimiter(this.#opts.maxSessions, this.#opts.maxWaiting, this.#opts.waitTimeoutMs);
    this.#limiter.onPressure = () => this.#freeIdleSlot();
    const lineRefreshMs = options.lineRefreshMs ?? DEFAULT_LINE_REFRESH_MS;
    const lineSwitchMargin = options.lineSwitchMargin ?? DEFAULT_LINE_SWITCH_MARGIN;
    checkMs(lineRefreshMs, "client option", "lineRefreshMs");
    if (!(lineSwitchMargin >= 0 && lineSwitchMargin <= 100)) throw new RangeError("lineSwitchMargin must be within 0..100 score points");
    this.#lines = new LineKeeper(
      {
        preference: normalizePreference(options.linePreference),
        refreshMs: lineRefreshMs,
        switchMargin: lineSwitchMargin,
        maxHops: LINE_MAX_HOPS,
        probeTimeoutMs: this.#opts.probeTimeoutMs,
        maxAddresses: this.#opts.maxKnownAddresses,
        system: options.lineSystem,
        log: this.#log,
      },
      () => this.#entries.values(),
    );
    const self = this;
    this.#names = new NameBook(options.resolution, this.#shutdown.signal, this.#opts.maxKnownAddresses, {
      entries: () => this.#entries.values(),
      isServer: (address, port) => this.#book.lookup(address, port)?.serverId ?? null,
      prove: (address, port) => this.#identifier.prove(address, port),
      log: this.#log,
    });
    this.#entryHost = {
      limiter: this.#limiter,
      book: this.#book,
      log: this.#log,
      lingerMs: this.#opts.lingerMs,
      handshakeTimeoutMs: Math.min(Math.max(this.#opts.probeTimeoutMs * 3, 3000), MAX_TIMER_MS),
      requestTimeoutMs: this.#opts.requestTimeoutMs,
      stats: this.#stats,
      sessionOptions: { silenceMs: this.#opts.silenceMs, pingTimeoutMs: this.#opts.pingTimeoutMs, clientKey: this.#clientKey, creditOnArrival: options.creditOnArrival === true },
      signal: this.#shutdown.signal,
      firstStreamId: options.firstStreamId,
      nextSessionNumber: () => self.#nextSession++,
      entryIdle: (e) => {
        if (self.#entries.get(e.serverId) === e) self.#entries.delete(e.serverId);
      },
      rank: (addresses) => self.#lines.rank(addresses),
      lineFailed: (a) => self.#lines.failed(a),
      serverAddresses: (e, list, via) => self.#names.fromServer(e, list, via),
    };
    this.#identifier = new ServerIdentifier<Link>({
      book: this.#book,
      entryHost: this.#entryHost,
      probeTimeoutMs: this.#opts.probeTimeoutMs,
      assertOpen: () => this.#assertOpen(),
      entry: (id, key) => this.#entry(id, key),
      identified: (host, port, entry) => this.#names.identified(host, port, entry),
    });
  }

  /** Line measures taken, the datagrams they sent, the most that ran at once, and session moves to a better line. */
  get lineStats(): { measures: number; probesSent: number; switches: number; mostAtOnce: number } {
    return { ...this.#lines.stats };
  }

  /**
   * Measures the lines of every server in use now (as the `lineRefreshMs`
   * timer does) and moves each session whose server has a clearly better
   * line; resolves once the measures and moves are done.
   */
  refreshLines(): Promise<void> {
    return this.#lines.refresh();
  }

  /** The client's metrics as OpenMetrics text (docs/client.md, "Metrics"); a host exposes them as it likes. */
  metrics(): string {
    let links = 0;
    for (const e of this.#entries.values()) links += e.links.size;
    return renderClientMetrics({ stats: this.#stats, servers: this.#entries.size, links, sockets: this.#limiter.used, maxSockets: this.#limiter.max, addresses: this.addresses().length, line: this.#lines.stats });
  }

  /** Sockets held now (sessions, active and draining). */
  get socketsInUse(): number {
    return this.#limiter.used;
  }

  /**
   * Opens a link for `app` to the server at host:port. If the client already
   * has a session to that server — whatever address it was opened to — the
   * link rides it (C3); otherwise a session is opened, within the socket limit (C9).
   */
  async connect(options: ConnectOptions): Promise<Link> {
    if (this.#closed) throw new ClientClosedError("Cannot connect: the client is closed; create a new one");
    const { host, port, app, trustNew, expectKey } = options;
    if (typeof app !== "string" || app.length === 0) throw new TypeError("connect: app must be a non-empty string");
    if (expectKey !== undefined && (typeof expectKey !== "string" || !isFingerprint(expectKey))) throw new TypeError('connect: expectKey must be a key fingerprint, "SHA256:" and 43 base64 characters, as "perilink id" prints it');
    const attempt = this.#connect(host, port, app, { trustNew: trustNew === true, expectKey });
    const settled = attempt.then(
      () => {},
      () => {},
    );
    this.#connecting.add(settled);
    try {
      return await attempt;
    } catch (err) {
      if (this.#closed && !(err instanceof ClientClosedError)) {
        throw new ClientClosedError("Cannot connect: the client was closed while connecting", { cause: err });
      }
      throw err;
    } finally {
      this.#connecting.delete(settled);
    }
  }

  async #connect(host: string, port: number, app: string, choice: TrustChoice): Promise<Link> {
    // C6/C7: a name becomes addresses first; names that share an address are one server before any socket.
    // A server the known-servers record (or the expected key) rules out at an address does not win it.
    const accept = (e: ServerEntry, address: string): ServerEntry => {
      try {
        this.#book.checkKnown(host, port, address, e.serverId, e.publicKey, choice);
      } catch (err) {
        // No session is closed here: a TCP fallback stops before proving our key unless a connect wanted
        // that server, and an idle session of a server ruled out only for this host is still that server's.
        this.#log.warn("client_server_ruled_out", { host, port, address, serverId: e.serverId, error: err as Error });
        throw err;
      }
      return e;
    };
    const wants = (a: string): ServerWanted => (id, key) => this.#book.checkKnown(host, port, a, id, key, choice);
    const { entry, address } = await this.#names.entryFor(host, port, (a) => this.#identifier.entryFor(a, port, wants(a)), accept);
    this.#assertOpen();
    for (const was of this.#book.recordKnown(host, address, port, entry.serverId, entry.publicKey)) {
      const by = choice.expectKey ? "expectKey" : choice.trustNew ? "trustNew" : "the name's own record";
      this.#log.warn("client_known_server_replaced", { host, port, [was.kind]: was.host, was: was.serverId, now: entry.serverId, by });
    }
    entry.addAddress({ host: address, port });
    this.#names.joined(host, port, entry);
    const link = new Link(this.#nextLink++, app, host, port, entry);
    this.#linkAddress.set(link, address);
    entry.addLink(link);
    try {
      await link.bind();
      this.#assertOpen();
    } catch (err) {
      link.close();
      throw err;
    }
    this.#lines.review(entry); // after the connect, never before it: measuring does not delay it
    return link;
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClientClosedError("Cannot connect: the client was closed while connecting");
  }

  #entry(serverId: string, publicKey: Buffer): ServerEntry<Link> {
    let e = this.#entries.get(serverId);
    if (!e) {
      e = new ServerEntry<Link>(this.#entryHost, serverId, publicKey);
      this.#entries.set(serverId, e);
    }
    return e;
  }

  /** When a connect must wait for a socket, a session that no link uses gives its slot back at once. */
  #freeIdleSlot(): void {
    for (const e of this.#entries.values()) {
      if (e.idle) {
        e.closeIdle();
        return;
      }
    }
  }

  /** The session table: one row per open link, then one per session no link uses (lingering). */
  sessions(): SessionRow[] {
    const rows: SessionRow[] = [];
    for (const e of this.#entries.values()) {
      const live = e.active;
      const base = {
        serverId: e.serverId,
        keyFingerprint: keyFingerprint(e.publicKey),
        communicationAddress: live ? live.address.host : null,
        communicationPort: live ? live.address.port : null,
        refCount: e.links.size,
        line: live ? this.#lines.row(live.address) : null,
      };
      for (const l of e.links) {
        rows.push({
          managementNumber: l.managementNumber,
          app: l.app,
          requestedHost: l.requestedHost,
          requestedAddress: this.#linkAddress.get(l) ?? l.requestedHost,
          requestedPort: l.requestedPort,
          ...base,
          sessionNumber: l.sessionNumber,
          state: l.sessionNumber === null ? "moving" : "active",
        });
      }
      // Sessions no link rides: one kept for lingerMs after its last link, and those finishing after a move.
      const none = { managementNumber: 0, app: "", requestedHost: "", requestedAddress: "", requestedPort: 0 };
      if (live && e.links.size === 0) rows.push({ ...none, ...base, sessionNumber: live.number, state: "lingering" });
      for (const d of e.draining) {
        rows.push({ ...none, ...base, communicationAddress: d.session.remoteAddress, communicationPort: d.session.remotePort, refCount: 0, line: null, sessionNumber: d.number, state: "draining" });
      }
    }
    // Links first, by number; then the sessions without links.
    return rows.sort((a, b) => (a.managementNumber || Infinity) - (b.managementNumber || Infinity));
  }

  /**
   * The address list (Fig. 16, 23): every (name, address, source) the client
   * learned, with the answer's remaining TTL and the server a signed probe
   * proved at that address (null before one did).
   */
  addresses(): AddressRow[] {
    return this.#names.rows();
  }

  /**
   * Forgets what the client knows of `target` — a name, an address, a server
   * identifier or a key fingerprint: which server it led to (the
   * known-servers record, on every port) and the pinned keys of those
   * servers, in memory and in the pin file. The next connect by it trusts
   * the server that answers, as on first use (`perilink forget` does this
   * for the state directory's pin file). Sessions open now stay.
   */
  async forget(target: string): Promise<{ records: number; pins: number }> {
    const { records, pins } = this.#book.forgetKnown(target);
    await this.#book.flush();
    const failed = this.#book.writeError;
    if (failed) throw failed; // forgotten in memory, not in the file: a restarted client would still refuse
    return { records: records.length, pins };
  }

  /**
   * Closes every link and session: in-flight requests finish first. A
   * connect still in progress fails with `PERILINK_CLIENT_CLOSED`; when the
   * promise resolves, the client holds no socket.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    const closed = new ClientClosedError("Cannot open a session: the client is closing");
    this.#shutdown.abort(closed);
    this.#limiter.close(closed);
    for (const e of this.#entries.values()) for (const l of [...e.links]) l.close();
    await Promise.all([this.#lines.close(), ...this.#connecting, ...[...this.#entries.values()].map((e) => e.close())]);
    this.#entries.clear();
    await this.#book.flush();
  }
}

/** Creates a client session table. Defaults come from the build target. */
export function createClient(options: ClientOptions = {}): PerilinkClient {
  return new PerilinkClient(options);
}
