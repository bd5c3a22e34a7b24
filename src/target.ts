import defaultTarget from "../targets/node20.json" with { type: "json" };

/**
 * The build target's profile: budgets and the limits that become the
 * runtime's defaults. Running from source it is `targets/node20.json`; the
 * bundler substitutes the chosen target's file for that import (build/build.ts),
 * without the fields only the build reads (description, esbuildTarget, arch,
 * bundleBudgetBytes): nothing in the program may read those.
 */
export interface Target {
  name: string;
  description: string;
  runtime: "node" | "deno";
  esbuildTarget: string;
  arch: string[];
  bundleBudgetBytes: number;
  /** "device": a build that serves, without the client and the other host commands (src/cli/host_commands_off.ts). Absent: a host build. */
  role?: "device";
  memory: { maxOldSpaceMiB: number };
  writeSlabBytes: number;
  /**
   * False on a device: its sessions announce no large records, so a peer
   * seals records of at most 16 KiB to it and a session in progress holds no
   * more (docs/protocol.md §2.5). Absent: large records (68 KiB), which
   * seal bulk bytes at a quarter of the per-record cost.
   */
  largeRecords?: boolean;
  server: {
    maxSessions: number;
    maxSessionsPerPeer: number;
    maxChannelsPerSession: number;
    maxInflightPerSession: number;
    maxFrameBytes: number;
    handshakeTimeoutMs: number;
    idleTimeoutMs: number;
    /** Unsent bytes one session may hold before the server stops reading it. */
    maxSessionOutputBytes: number;
    /** Bytes held for frames in progress and unsent output, summed over all sessions. */
    maxBufferedBytes: number;
    /** How long a session may hold unsent output without the peer reading any of it. */
    writeTimeoutMs: number;
    /** How long a request handler may run before the server answers for it. */
    requestTimeoutMs: number;
    /** New sessions a peer may open per second, and in a burst (each handshake costs the server a signature). */
    sessionRatePerPeer: number;
    sessionBurstPerPeer: number;
    /** New sessions all peers together may open per second, and in a burst (peers vouched for are not counted; 0: off). */
    sessionRateGlobal: number;
    sessionBurstGlobal: number;
    /** A drain sends GOAWAY to its sessions spread over this long (at most a quarter of the drain deadline), not all at once; 0: at once. */
    goAwaySpreadMs: number;
    /** How long an app's `ready()` hook may take before the server (or the new process of an upgrade) gives up starting. */
    readyTimeoutMs: number;
    /**
     * An upgrade with service processes (`--workers`): how many the new group starts beside the
     * old group's before one of those has exited; each that exits lets one more start. 1 keeps a
     * device's peak memory near one group's; `MAX_WORKERS` starts the whole new group at once.
     */
    upgradeSurge: number;
  };
  probe: {
    ratePerSecond: number;
    burst: number;
    trackedSources: number;
    globalRatePerSecond: number;
    globalBurst: number;
  };
  client: {
    maxSessions: number;
    maxSessionsPerServer: number;
    maxWaiting: number;
    waitTimeoutMs: number;
    lingerMs: number;
    probeTimeoutMs: number;
    requestTimeoutMs: number;
    maxFrameBytes: number;
    /** With requests outstanding, how long a session may read nothing before it sends a PING. */
    silenceMs: number;
    /** How long that PING (or a keepalive PING) may go unanswered before the line is dead. */
    pingTimeoutMs: number;
    /** The longest wait between a link's tries to reach a server whose every address is down (backoff from 100 ms, doubling, with jitter). */
    reconnectMaxMs: number;
  };
  /** The host agent's per-process bounds (src/agent/): one local process cannot starve the others or grow the agent. */
  agent: {
    /** Application processes connected at once. */
    maxProcesses: number;
    maxLinksPerProcess: number;
    maxInflightPerProcess: number;
    /** Streamed requests at once: each may hold a server stream window of unread response in the agent. */
    maxStreamsPerProcess: number;
    /** Bytes of answers a process may leave unread before the agent stops reading its requests; four times this, and it is cut off. */
    maxUnreadBytesPerProcess: number;
  };
}

export const TARGET: Readonly<Target> = defaultTarget as Target;
