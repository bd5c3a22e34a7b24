import type net from "node:net";
import type { Logger } from "../logger.ts";
import type { LatencyHistogram } from "../open_metrics.ts";
import { Admission, refuseConnection, type AdmissionHost, type Refusal } from "./admission.ts";
import type { SessionApp } from "./app.ts";
import { BufferBudget } from "./buffer_budget.ts";
import type { ConnectionService, WorkerStatus } from "./connection_service.ts";
import type { Identity } from "./identity.ts";
import type { ServerLimits } from "./limits.ts";
import type { Endpoint, ListenerSet } from "./listener_set.ts";
import { ServerSession, type SessionHost } from "./session.ts";
import type { SessionFlow } from "./session_flow.ts";
import type { ServerStats } from "./server_stats.ts";
import type { ChannelHost } from "./request_context.ts";
import type { TrustedKeys } from "./trusted_keys.ts";
import { Pairing } from "./pairing.ts";
import { stripZone } from "../address.ts";
import { peerKey } from "./peer_key.ts";
import { advertisedFor } from "./advertised.ts";
import type { KeyVerdict } from "./session_input.ts";

/** A full server gives the slot of a session that has done nothing with it for this long to a newcomer. */
const SESSION_EVICT_AFTER_MS = 1000;
/** A drain of at most this many sessions sends every GOAWAY at once; of more, spreads them all. */
const GOAWAY_AT_ONCE = 8;

/** What the sessions of a server share: what each session reads of its host, and the sources the session rate tracks. */
export interface SessionServiceParts extends Omit<SessionHost, "budget" | "sessionClosed" | "accessDenied" | "pairing" | "keyProven" | "keyTrusted"> {
  /** Where the trusted keys and a pairing offer live; null: no pairing. */
  stateDir: string | null;
  trackedSources: number;
}

/**
 * Multiplexed sessions (S3): each accepted connection, once admitted
 * (admission.ts), becomes a `ServerSession`; they share the server's buffer
 * budget; a drain sends every session GOAWAY and waits for their requests.
 */
export class SessionService implements ConnectionService, SessionHost, AdmissionHost {
  readonly identity: Identity;
  readonly generation: number;
  readonly limits: ServerLimits;
  readonly app: SessionApp;
  readonly log: Logger;
  readonly peerLog: Logger;
  readonly stats: ServerStats;
  readonly writeSlabBytes: number;
  readonly budget: BufferBudget;
  readonly pauseOnConnect = false;
  readonly dispatch = "single";
  readonly access: TrustedKeys | null;
  readonly pairing: Pairing | null;
  #sessions = new Set<ServerSession>();
  /** What the listeners listen on now, and the ADDRESSES payload made for each local address. */
  #endpoints: Endpoint[] = [];
  #advertised = new Map<string, Buffer | null>();
  /** Sessions that gave up their slot to a newcomer and are closing. */
  #evicted = new Set<ServerSession>();
  #admission: Admission;
  #draining = false;
  /** Set while draining: called when the last session closes. */
  #noSessions: (() => void) | null = null;

  constructor(parts: SessionServiceParts) {
    this.identity = parts.identity;
    this.generation = parts.generation;
    this.limits = parts.limits;
    this.app = parts.app;
    this.log = parts.log;
    this.peerLog = parts.peerLog;
    this.stats = parts.stats;
    this.writeSlabBytes = parts.writeSlabBytes;
    this.access = parts.access;
    this.pairing =
      parts.stateDir === null
        ? null
        : new Pairing(parts.stateDir, parts.identity, parts.log, parts.peerLog, {
            denied: (peer) => {
              this.stats.accessDenied++;
              this.#admission.denied(peer);
            },
            refusedTooOften: (peer) => this.#admission.refusedTooOften(peer),
          });
    this.budget = new BufferBudget(parts.limits.maxBufferedBytes, () => flowsOf(this.#sessions), () => this.#sessions.size);
    this.#admission = new Admission(parts.limits, parts.trackedSources, this);
  }

  get connections(): number {
    return this.#sessions.size;
  }

  get inflight(): number {
    return this.stats.inflight;
  }

  bufferedBytes(): number {
    return this.budget.refresh();
  }

  /** The counters, with the bytes of the sessions still open added to those of the closed ones. */
  counters(own: Record<string, number>): Record<string, number> {
    let bytesIn = own.bytesIn ?? 0;
    let bytesOut = own.bytesOut ?? 0;
    for (const s of this.#sessions) {
      const [read, written] = s.bytesMoved;
      bytesIn += read;
      bytesOut += written;
    }
    return { ...own, bytesIn, bytesOut };
  }

  latency(own: LatencyHistogram): LatencyHistogram {
    return own;
  }

  refusedBy(own: Partial<Record<Refusal, number>>): Partial<Record<Refusal, number>> {
    return own;
  }

  workers(): WorkerStatus[] {
    return [];
  }

  /** The listeners opened or changed: sessions learn the addresses they may fail over to (docs/protocol.md §5.4). */
  async listening(listeners: ListenerSet): Promise<void> {
    const endpoints = listeners.endpoints();
    const changed = this.#endpoints.length !== endpoints.length || endpoints.some((e, i) => e.address !== this.#endpoints[i]?.address || e.port !== this.#endpoints[i]?.port);
    this.#endpoints = endpoints;
    this.#advertised.clear();
    if (changed) for (const s of this.#sessions) s.advertise();
  }

  /** SessionHost: the ADDRESSES payload for a session on `localAddress` (one per local address, made once per listener set). */
  advertised(localAddress: string): Buffer | null {
    let b = this.#advertised.get(localAddress);
    if (b === undefined) {
      b = advertisedFor(this.#endpoints, localAddress);
      if (this.#advertised.size < 64) this.#advertised.set(localAddress, b);
    }
    return b;
  }

  async stopAccepting(): Promise<void> {}

  accept(socket: net.Socket): void {
    const peer = socket.remoteAddress ?? "";
    const why = this.#admission.admit(peer);
    if (why !== null) {
      this.stats.refused(why);
      this.peerLog.info("session_refused", { peer, why });
      refuseConnection(socket);
      return;
    }
    const session = new ServerSession(socket, this);
    this.#sessions.add(session);
    this.stats.sessionsOpen++;
    this.stats.sessionsAccepted++;
    // Accepted while draining: served, and told at once to move on.
    if (this.#draining) void session.goAway();
  }

  /** AdmissionHost */
  budgetOver(): boolean {
    return this.budget.over();
  }

  /** AdmissionHost: room under `maxSessions`, or one made by evicting an idle session. */
  makeRoom(): boolean {
    return this.#sessions.size - this.#evicted.size < this.limits.maxSessions || this.#evictIdle();
  }

  /** SessionHost: a channel was refused access; it counts against its peer's refusals. */
  accessDenied(session: ChannelHost, app: string): boolean {
    this.stats.accessDenied++;
    const more = this.#admission.denied(session.remoteAddress);
    this.peerLog.info("access_denied", { peer: session.remoteAddress, clientKey: session.clientKey, app, more });
    return more;
  }

  /**
   * SessionHost: a session's client proved its key. A key the server trusts
   * vouches for its peer (admission.ts); with `access: "open"` nobody is
   * vouched for, since any fresh key would do. A key this server does not
   * know counts against its peer's refusals as a refused channel does, so a
   * stranger cannot make it do handshakes faster than that allowance.
   */
  keyProven(session: ServerSession): KeyVerdict {
    if (this.keyTrusted(session)) {
      if (this.access !== null) this.#admission.vouch(session.remoteAddress);
      return "trusted";
    }
    if (this.#admission.denied(session.remoteAddress)) return "stranger";
    this.peerLog.info("stranger_cut_off", { peer: session.remoteAddress, clientKey: session.clientKey });
    session.destroy();
    return "ended";
  }

  /** SessionHost: whether the session's key is trusted now. */
  keyTrusted(session: ServerSession): boolean {
    return this.access === null || this.access.knows(session.clientKey);
  }

  vouchedPeers(): [string, number][] {
    return this.#admission.vouchedPeers();
  }

  adoptVouched(peers: unknown): void {
    this.#admission.adoptVouched(peers);
  }

  /** SessionHost: a session's socket closed. */
  sessionClosed(session: ServerSession): void {
    this.#evicted.delete(session);
    if (!this.#sessions.delete(session)) return;
    this.stats.sessionsOpen--;
    const [read, written] = session.bytesMoved;
    this.stats.bytesIn += read;
    this.stats.bytesOut += written;
    if (this.#sessions.size === 0) this.#noSessions?.();
    this.#admission.released(session.remoteAddress);
  }

  /**
   * Sessions that arrived on an address the device no longer has cannot carry
   * traffic any more: close them now, so their clients fail over at once
   * instead of waiting for TCP to time out.
   */
  addressRemoved(ep: Endpoint): void {
    for (const s of this.#sessions) {
      if (stripZone(s.localAddress) === stripZone(ep.address) && s.localPort === ep.port) s.destroy();
    }
  }

  async drain(timeoutMs: number): Promise<void> {
    this.#draining = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)));
    const spreading = this.#spreadGoAways(timeoutMs);
    const allClosed = new Promise<void>((r) => (this.#noSessions = r));
    if (this.#sessions.size === 0) this.#noSessions?.();
    await Promise.race([allClosed, deadline]);
    clearTimeout(timer);
    for (const t of spreading) clearTimeout(t);
    if (this.#sessions.size > 0) {
      this.log.warn("drain_deadline", { mode: "session", destroyed: this.#sessions.size, inflight: this.stats.inflight });
      for (const s of this.#sessions) s.destroy();
    }
  }

  /**
   * GOAWAY to every session: at once for a few, else spread evenly over
   * `limits.goAwaySpreadMs` (at most a quarter of the drain deadline), as
   * HAProxy's close-spread-time does, so their clients do not all open new
   * sessions — a signature and a key exchange each — in the same moment.
   * Sessions with requests running go first: they have the most to finish.
   */
  #spreadGoAways(timeoutMs: number): ReturnType<typeof setTimeout>[] {
    const sessions = [...this.#sessions];
    const window = sessions.length > GOAWAY_AT_ONCE ? Math.min(this.limits.goAwaySpreadMs, timeoutMs / 4) : 0;
    if (window <= 0) {
      for (const s of sessions) void s.goAway();
      return [];
    }
    sessions.sort((a, b) => Number(a.busy) - Number(b.busy)).reverse();
    return sessions.map((s, i) => setTimeout(() => void s.goAway(), (i * window) / sessions.length));
  }

  /**
   * Frees a slot for a newcomer: the most readily evictable session
   * (`evictionRank`), from the peer holding the most sessions among those
   * (fair across peers), the quiet one longest first.
   */
  #evictIdle(): boolean {
    const now = performance.now();
    const peers = new Map<ServerSession, string>();
    const held = new Map<string, number>();
    for (const s of this.#sessions) {
      const peer = peerKey(s.remoteAddress);
      peers.set(s, peer);
      held.set(peer, (held.get(peer) ?? 0) + 1);
    }
    let best: ServerSession | null = null;
    let bestKey: number[] = [];
    for (const [s, peer] of peers) {
      const rank = this.#evicted.has(s) ? null : s.evictionRank(now, SESSION_EVICT_AFTER_MS);
      if (rank === null) continue;
      const key = [rank, -held.get(peer)!, s.quietSince];
      if (best === null || before(key, bestKey)) [best, bestKey] = [s, key];
    }
    if (best === null) return false;
    this.#evicted.add(best);
    this.stats.sessionsEvicted++;
    best.evict();
    return true;
  }
}

/** The budget's holders: each session's flow control. */
function* flowsOf(sessions: Iterable<ServerSession>): Generator<SessionFlow> {
  for (const s of sessions) yield s.flow;
}

/** Whether `a` comes before `b`, compared element by element. */
function before(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return false;
}
