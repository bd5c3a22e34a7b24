import type { ClientStats } from "./client_stats.ts";
import { ClientClosedError, KeyMismatchError, ServerChangedError, UnreachableError } from "../errors.ts";
import { WireError } from "../protocol/constants.ts";
import type { ClientKey } from "./client_key.ts";
import { expectServer, type ServerCheck } from "./client_handshake.ts";
import type { Logger } from "../logger.ts";
import { ReconnectSchedule } from "./reconnect_schedule.ts";
import { ClientSession } from "./client_session.ts";
import type { IdentityBook } from "./identity_book.ts";
import type { SocketLimiter } from "./socket_limiter.ts";
import { openStaggered } from "./staggered_open.ts";
import { serverChanged } from "./known_servers.ts";
import { keyFingerprint } from "../protocol/keys.ts";

/** What an entry needs of a link riding it (Link implements it; this file does not import it). */
export interface EntryLink {
  readonly managementNumber: number;
  readonly app: string;
  readonly requestedHost: string;
  readonly requestedPort: number;
  readonly sessionNumber: number | null;
  /** The session the link rode went away or changed (`reason`): move to the entry's current one, now (`eager`) or at the next use. */
  rebind(reason?: "failover" | "line" | "upgrade" | "goaway", eager?: boolean, gone?: boolean): void;
  /** The server is reachable again: open the channel on the new session. */
  retryNow(): void;
  close(): void;
}

/** A session that ends sooner than this after it became active counts as a failed try (backoff), not a line that failed. */
const YOUNG_SESSION_MS = 5000;

export interface Address {
  host: string;
  port: number;
}

/** What an entry needs from the client that owns it. */
export interface EntryHost {
  readonly limiter: SocketLimiter;
  readonly book: IdentityBook;
  readonly log: Logger;
  readonly lingerMs: number;
  readonly handshakeTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly stats: ClientStats;
  /** What every session is opened with: dead-line detection and the key the client proves (ClientSession options). */
  readonly sessionOptions: { silenceMs: number; pingTimeoutMs: number; clientKey: Promise<ClientKey>; creditOnArrival?: boolean };
  /** Aborted when the client closes: ends handshakes in progress. */
  readonly signal: AbortSignal;
  /** @internal For tests only: the first stream id of every session. */
  readonly firstStreamId: number | undefined;
  nextSessionNumber(): number;
  entryIdle(entry: ServerEntry): void;
  /** Orders addresses for opening a session: the better line first (C8). */
  rank<A extends Address>(addresses: readonly A[]): A[];
  /** A session on this address failed (its line is measured again before it is trusted). */
  lineFailed(address: Address): void;
  /** A session of `entry` said where else its server listens (ADDRESSES): candidates, proven before use. */
  serverAddresses?(entry: ServerEntry, list: readonly Address[], via: string): void;
}

interface Live {
  session: ClientSession;
  number: number;
  /** The address it was opened to (the communication address). */
  address: Address;
  /** When it became active (performance.now() ms). */
  since: number;
}

/**
 * Everything the client holds for one server (one server identifier): the
 * addresses applications named for it, in the order they were first named;
 * its one active session and any older sessions still finishing after a
 * GOAWAY; and the links riding it (C3, C4, C5, C10).
 *
 * States of the active session: none ──open()──▶ opening ──▶ active
 *   active ──GOAWAY──▶ (moved to draining; a new one opens for the links)
 *   active ──failure (or a dead line)──▶ none (the next use fails over to another address)
 *   active ──moveTo(better line)──▶ the new session active, the old one draining
 *   active ──last link closed──▶ lingering ──lingerMs──▶ closed
 */
export class ServerEntry<L extends EntryLink = EntryLink> {
  readonly serverId: string;
  readonly publicKey: Buffer;
  readonly addresses: Address[] = [];
  readonly links = new Set<L>();
  #host: EntryHost;
  #active: Live | null = null;
  #opening: Promise<Live> | null = null;
  /** Sessions no longer active that finish their requests and close: drained by the server, retired, or idle. */
  #draining = new Map<ClientSession, number>();
  #linger: ReturnType<typeof setTimeout> | null = null;
  #lastFailed: Address | null = null;
  #moving = false;
  #closed = false;
  #reconnect = new ReconnectSchedule({
    attempt: () => this.session(),
    up: () => { for (const link of this.links) link.retryNow(); },
    gaveUp: () => { for (const link of this.links) link.retryNow(); }, // each link goes offline with the error, not tried again
    wanted: () => !this.#closed && this.links.size > 0,
  });

  /** A hello from another server (id or key) is refused before the client proves its key. */
  readonly #isThisServer: ServerCheck;

  constructor(host: EntryHost, serverId: string, publicKey: Buffer) {
    this.#host = host;
    this.serverId = serverId;
    this.publicKey = publicKey;
    this.#isThisServer = expectServer(this);
  }

  /** Adds an address in designation order (first named first). */
  addAddress(a: Address): void {
    if (!this.addresses.some((b) => b.host === a.host && b.port === a.port)) this.addresses.push(a);
  }

  /** Forgets an address a signed probe showed to be another server (a name had suggested it). */
  dropAddress(a: Address): void {
    const i = this.addresses.findIndex((b) => b.host === a.host && b.port === a.port);
    if (i >= 0) this.addresses.splice(i, 1);
  }

  /**
   * Adopts a session opened elsewhere (the TCP fallback of identification), its socket slot already
   * counted. If the entry has a usable session by now, that one stays and the adopted one is closed
   * (one session per server); an `open()` still in progress will find this one and drop its own.
   */
  adopt(session: ClientSession, address: Address): void {
    this.#install(session, address);
  }

  /** Every address of the server was down, or its session died young: try again later (one schedule for all its links). */
  retryLater(): void {
    this.#reconnect.later();
  }

  /** The client's default request deadline (a link's waitForReady waits up to it). */
  get requestTimeoutMs(): number {
    return this.#host.requestTimeoutMs;
  }

  get stats(): ClientStats {
    return this.#host.stats;
  }

  get active(): Live | null {
    return this.#active;
  }
  get sessionCount(): number { return (this.#active ? 1 : 0) + this.#draining.size; }
  get draining(): { session: ClientSession; number: number }[] {
    return [...this.#draining].map(([session, number]) => ({ session, number }));
  }
  /** True when an open session has no link: a slot that can be given back at once. */
  get idle(): boolean {
    return this.links.size === 0 && this.#active !== null;
  }

  addLink(link: L): void {
    this.links.add(link);
    if (this.#linger) clearTimeout(this.#linger);
    this.#linger = null;
  }

  /** C4: the session closes only after its last link closed, and `lingerMs` later. */
  removeLink(link: L): void {
    if (!this.links.delete(link) || this.links.size > 0) return;
    if (this.#host.lingerMs <= 0) {
      this.closeIdle();
      return;
    }
    this.#linger = setTimeout(() => this.closeIdle(), this.#host.lingerMs);
    this.#linger.unref?.();
  }

  /** Closes the active session if no link uses it (linger over, or the socket slot is wanted). */
  closeIdle(): void {
    if (this.links.size > 0) return;
    if (this.#linger) clearTimeout(this.#linger);
    this.#linger = null;
    const live = this.#active;
    this.#active = null;
    if (!live) return this.#maybeIdle();
    this.#draining.set(live.session, live.number); // finishing: counted and awaited until its socket closes
    live.session.close().catch(() => live.session.destroy());
  }

  /**
   * The session links should use now: the active one, else a new one on the
   * first address that answers (C5, C8: the better line first — the order
   * they were named until lines are measured — and the one that just failed
   * last; attempts staggered as in Happy Eyeballs). Throws `ServerChangedError` when an address now leads to
   * another server, `ServerBusyError` when one refused as busy, else `UnreachableError`.
   */
  session(): Promise<Live> {
    if (this.#active && !this.#active.session.closed && !this.#active.session.draining) return Promise.resolve(this.#active);
    this.#opening ??= this.#open().finally(() => (this.#opening = null));
    return this.#opening;
  }

  async #open(): Promise<Live> {
    if (this.#closed) throw closedError();
    const order = this.#host.rank(this.addresses).sort((a, b) => Number(a === this.#lastFailed) - Number(b === this.#lastFailed));
    let changed: ServerChangedError | null = null;
    const out = await openStaggered(order, {
      limiter: this.#host.limiter,
      signal: this.#host.signal,
      connect: (a, signal) =>
        this.#connect(a, signal).catch((err: unknown) => {
          if (err instanceof ServerChangedError) {
            this.#host.book.forget(a.host, a.port);
            changed = err;
          }
          throw err;
        }),
      install: (session, a) => this.#install(session, a),
      drained: (live) => live.session.draining,
      closed: () => this.#closed,
      isFatal: (err) => err instanceof KeyMismatchError || err instanceof ClientClosedError,
      closedError,
      failed: (a, err) => this.#host.log.debug("client_address_failed", { serverId: this.serverId, host: a.host, port: a.port, error: err as Error }),
    });
    if (out.fatal) throw out.fatal;
    if (out.won) return out.won;
    // An address of this server now leads to another: that is what the caller must hear (and how to accept it).
    if (changed !== null) throw changed;
    // One condition, one code: a server that answered "busy" is busy, whatever else failed.
    if (out.busy) throw out.busy;
    throw new UnreachableError(
      `Cannot reach server ${this.serverId}: none of its ${order.length} known addresses answered (${order.map((a) => `${a.host}:${a.port}`).join(", ")})`,
      { cause: out.lastErr },
    );
  }

  /** A session to `a` that refuses, before proving our key, any server but this one. */
  #connect(a: Address, signal: AbortSignal): Promise<ClientSession> {
    const h = this.#host;
    const opening = ClientSession.connect({ host: a.host, port: a.port, timeoutMs: h.handshakeTimeoutMs, requestTimeoutMs: h.requestTimeoutMs, ...h.sessionOptions, signal, checkServer: this.#isThisServer, firstStreamId: h.firstStreamId });
    opening.then(() => h.stats.sessionsOpened++, () => h.stats.sessionAttemptsFailed++);
    return opening;
  }

  /**
   * The one way a connected session (its socket slot counted) joins the
   * entry. It is closed, and its slot given back, when it is not this server
   * (identifier or pinned key), when the entry is closed, or when the entry
   * already has a usable session (then that one is returned). A session that
   * arrives draining (GOAWAY in the same read as its hello) is attached and
   * moved to draining at once.
   */
  #install(session: ClientSession, address: Address): Live {
    const drop = (err?: Error): void => {
      session.destroy();
      this.#host.limiter.release();
      if (err) throw err;
    };
    const where = `${address.host}:${address.port}`;
    if (this.#closed) drop(closedError());
    if (session.serverId !== this.serverId) {
      this.#host.book.forget(address.host, address.port);
      drop(serverChanged(address.host, address.port, { serverId: this.serverId, keyFingerprint: keyFingerprint(this.publicKey) }, { serverId: session.serverId, keyFingerprint: keyFingerprint(session.publicKey) }, address.host));
    }
    try {
      this.#host.book.pin(session.serverId, session.publicKey, where);
    } catch (err) {
      drop(err as Error); // an impostor's socket is never kept
    }
    const active = this.#active;
    if (active && !active.session.closed && !active.session.draining) {
      drop();
      return active;
    }
    return this.#attach(session, address);
  }

  /** Takes a connected session as the active one. */
  #attach(session: ClientSession, address: Address): Live {
    const live: Live = { session, number: this.#host.nextSessionNumber(), address, since: performance.now() };
    this.#active = live;
    session.on("goaway", (_last: number, code: number) => this.#onGoAway(live, code));
    session.on("addresses", (list: Address[]) => this.#host.serverAddresses?.(this, list, address.host));
    if (session.serverAddresses.length > 0) this.#host.serverAddresses?.(this, session.serverAddresses, address.host);
    session.on("close", (err?: Error) => this.#onClose(live, err));
    if (session.draining) this.#onGoAway(live); // its GOAWAY was read before anyone listened
    return live;
  }

  /**
   * C8: moves the server's session to address `a`, make-before-break: a
   * session is opened there first, and only once it is in place do the
   * links move to it, while the old one finishes its in-flight requests and
   * closes (as after a GOAWAY) — no request fails or runs twice. Resolves
   * false when nothing moved: no active session, already there, an open or
   * move in progress, no free socket (a move never waits for one), or `a`
   * did not answer as this server.
   */
  async moveTo(a: Address): Promise<boolean> {
    const from = this.#active;
    if (this.#closed || this.#moving || this.#opening || !from || (from.address.host === a.host && from.address.port === a.port)) return false;
    const limiter = this.#host.limiter;
    if (!limiter.tryAcquire()) return false;
    this.#moving = true;
    try {
      let session: ClientSession;
      try {
        session = await this.#connect(a, this.#host.signal);
      } catch (err) {
        limiter.release();
        this.#host.log.debug("client_line_move_failed", { serverId: this.serverId, host: a.host, port: a.port, error: err as Error });
        return false;
      }
      const old = this.#active;
      let keep = !this.#closed && session.serverId === this.serverId && (old === null || old === from);
      if (keep) {
        try {
          this.#host.book.pin(session.serverId, session.publicKey, `${a.host}:${a.port}`);
        } catch {
          keep = false; // an impostor's socket is never kept
        }
      }
      if (!keep || session.draining) {
        session.destroy();
        limiter.release();
        return false;
      }
      this.#attach(session, a);
      if (old) {
        this.#draining.set(old.session, old.number);
        old.session.close().catch(() => old.session.destroy());
      }
      this.#host.log.info("client_session_moved", { serverId: this.serverId, from: `${from.address.host}:${from.address.port}`, to: `${a.host}:${a.port}` });
      for (const link of this.links) link.rebind("line");
      return true;
    } finally {
      this.#moving = false;
    }
  }

  /** C10: the server is draining this session; links move to a new one, in-flight requests finish here. */
  #onGoAway(live: Live, code = 0): void {
    if (this.#active !== live) return;
    this.#active = null;
    this.#draining.set(live.session, live.number);
    this.#host.log.debug("client_session_goaway", { serverId: this.serverId, session: live.number });
    // Ends it once its requests are answered; the server may keep its side open.
    live.session.close().catch(() => live.session.destroy());
    // A full server that evicted this quiet session (ServerBusy) gets no new one now: the links
    // move when they next send, so quiet clients do not take turns evicting each other.
    const reason = code === WireError.ShuttingDown ? "upgrade" : "goaway";
    for (const link of this.links) link.rebind(reason, code !== WireError.ServerBusy);
  }

  #onClose(live: Live, err: Error | undefined): void {
    this.#host.limiter.release();
    if (this.#draining.delete(live.session)) {
      this.#maybeIdle();
      return;
    }
    if (this.#active !== live) {
      this.#maybeIdle(); // closed on purpose (linger over): the entry may go
      return;
    }
    this.#active = null;
    if (err) {
      // C5: the communication address failed: it goes last, and its line is measured again.
      this.#lastFailed = live.address;
      this.#host.lineFailed(live.address);
      this.#host.log.info("client_session_failed", { serverId: this.serverId, session: live.number, error: err });
    }
    // Closed under us, with or without an error (the server closed it without GOAWAY): the links move
    // now — unless it died young, as a crash-looping or overloaded server's sessions do: then they
    // wait for the entry's next try, with backoff, so that no client reconnects in a tight loop.
    const young = performance.now() - live.since < YOUNG_SESSION_MS;
    if (!young) this.#reconnect.reset();
    for (const link of this.links) link.rebind("failover", !young, true); // its session is gone either way: moving
    if (young) this.#reconnect.died();
    this.#maybeIdle();
  }

  #maybeIdle(): void {
    if (this.links.size === 0 && this.#active === null && this.#draining.size === 0 && this.#opening === null) this.#host.entryIdle(this);
  }

  /** Closes everything of this server (client shutdown). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#linger) clearTimeout(this.#linger);
    this.#reconnect.stop();
    const all = [...(this.#active ? [this.#active.session] : []), ...this.#draining.keys()];
    this.#active = null;
    await Promise.all(all.map((s) => s.close().catch(() => s.destroy())));
    // An open() still in progress ends by itself: the client aborted its handshake and refused its slot.
    await this.#opening?.catch(() => {});
  }
}

function closedError(cause?: unknown): ClientClosedError {
  return new ClientClosedError("Cannot open a session: the client is closed", cause === undefined ? undefined : { cause });
}
