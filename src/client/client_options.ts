import type { Logger } from "../logger.ts";
import type { LineRow } from "./line/line_keeper.ts";
import type { LinePreference } from "./line/line_score.ts";
import type { LineSystem } from "./line/line_system.ts";
import type { ResolutionOptions } from "./names/resolution_options.ts";

/** What a client session table is told (`createClient(options)`), what `connect()` takes, and what `sessions()` reports. */

export interface ClientOptions {
  /** Most TCP sockets (sessions) the client holds at once. */
  maxSessions?: number;
  /** Active sessions per server (a draining one does not count). Only 1 is supported. */
  maxSessionsPerServer?: number;
  /** Connects that may wait for a socket when `maxSessions` is reached. */
  maxWaiting?: number;
  waitTimeoutMs?: number;
  /** How long a session with no link stays open, to absorb reconnect churn. */
  lingerMs?: number;
  probeTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** With requests outstanding, how long a session may read nothing before it sends a PING (dead-line detection). */
  silenceMs?: number;
  /** How long a PING may go unanswered before the line is dead and the links move to another address; 0 turns it off. */
  pingTimeoutMs?: number;
  /** How long an address's identifier is trusted without a new probe. */
  identityTtlMs?: number;
  /** Bound of the identity cache and of the pinned keys. */
  maxKnownAddresses?: number;
  logger?: Logger;
  /**
   * Keep the pinned server keys in this file as well as in memory, so a
   * restarted client (or another one sharing the file) still refuses an
   * impostor. Written atomically, mode 0600; a corrupt file is a
   * `PERILINK_PIN_FILE` error.
   */
  pinFile?: string;
  /**
   * Where the client's key (`client-key.json`, made on first use) and, unless
   * `pinFile` says otherwise, its pins (`client-pins.json`) live: default the
   * user's state directory, as for `perilink call` (`$PERILINK_STATE_DIR`,
   * else `~/.local/state/perilink`, `/var/lib/perilink` for root). `false`:
   * a key made for this process only and pins in memory only — a device
   * with `access: "keys"` then refuses it.
   */
  stateDir?: string | false;
  /**
   * How names are turned into addresses (C6): which sources, in what order,
   * their deadline, unicast name servers, reverse lookups, interfaces.
   */
  resolution?: ResolutionOptions;
  /**
   * C8: how the lines to a server's addresses are weighed (bandwidth, hops,
   * MTU, RTT; each weight ≥ 0). Default: all 1. The session runs on the
   * address whose line scores best, and moves when another scores
   * `lineSwitchMargin` points better.
   */
  linePreference?: Partial<LinePreference>;
  /** How long a line measure is trusted, and how often the lines of servers in use are measured again (0: only after connects). */
  lineRefreshMs?: number;
  /** Score points (of 100) by which another line must beat the session's before the session moves: the hysteresis. */
  lineSwitchMargin?: number;
  /** @internal The OS seam of line measures (tests). */
  lineSystem?: LineSystem;
  /** @internal Sessions give response bodies' session credit back as they arrive (the host agent, whose sessions processes share). */
  creditOnArrival?: boolean;
  /** @internal For tests only: the first stream id of every session (default 1). */
  firstStreamId?: number;
}

/** The file, in the state directory, where a client keeps the server keys it pinned. */
export const CLIENT_PIN_FILE = "client-pins.json";

/** Defaults of the line options (C8). */
export const DEFAULT_LINE_REFRESH_MS = 30_000;
export const DEFAULT_LINE_SWITCH_MARGIN = 5;
/** TTL-limited probes per line measure: routers beyond this many are not counted. */
export const LINE_MAX_HOPS = 8;

export interface ConnectOptions {
  /** A numeric address, or a name (host name, FQDN, NetBIOS name, `.local` name). */
  host: string;
  port: number;
  /** The application's id, carried in its channel. */
  app: string;
  /**
   * Accept the server the host leads to now even when the known-servers
   * record says it led to another before (the server was replaced on
   * purpose); the record then names the new one.
   */
  trustNew?: boolean;
  /**
   * The key (`SHA256:…`, as `perilink id` prints it) the server must prove,
   * learned out of band: any other is `PERILINK_SERVER_CHANGED`, whatever
   * the record says; the record then names this server.
   */
  expectKey?: string;
}

/** One row of the session table (Fig. 5 of the seed, plus reference count and state). */
export interface SessionRow {
  managementNumber: number;
  app: string;
  /** The host as the application gave it: a name or a numeric address. */
  requestedHost: string;
  /** The numeric address the requested host stood for when the link was made. */
  requestedAddress: string;
  requestedPort: number;
  communicationAddress: string | null;
  communicationPort: number | null;
  serverId: string;
  keyFingerprint: string;
  sessionNumber: number | null;
  refCount: number;
  /** A link's: active, moving, closed; a row with no link (managementNumber 0, app ""): lingering (kept for lingerMs) or draining (finishing after a move). */
  state: "active" | "moving" | "closed" | "lingering" | "draining";
  /** The measured line of the communication address (Fig. 25), or null before its first measure. */
  line: LineRow | null;
}
