/** The counters of events (not levels): what a new process continues after an upgrade. */
const CARRIED = ["sessionsAccepted", "sessionsRefused", "accessDenied", "requests", "messages", "probes", "probesDropped", "protocolErrors", "sessionsCutOff", "sessionsEvicted", "requestTimeouts", "handoffs"] as const;

/** Counters a server keeps (R4); `status` reports them. Plain numbers, no allocation to update. */
export class ServerStats {
  sessionsOpen = 0;
  sessionsAccepted = 0;
  sessionsRefused = 0;
  /** Channels refused because the client's key is not trusted for their app. */
  accessDenied = 0;
  channelsOpen = 0;
  requests = 0;
  inflight = 0;
  messages = 0;
  probes = 0;
  probesDropped = 0;
  protocolErrors = 0;
  /** Sessions ended because their peer let them make no progress (write timeout, buffer budget). */
  sessionsCutOff = 0;
  /** Idle sessions closed to give their slot to a newcomer at maxSessions. */
  sessionsEvicted = 0;
  /** Requests whose handler outlived `requestTimeoutMs`. */
  requestTimeouts = 0;
  rawConnections = 0;
  /** Upgrades that handed this server's service over to a new process (counted in the new one). */
  handoffs = 0;

  /**
   * A new process continues the totals of the one it took over from (as
   * Envoy's hot restart does): every counter of events, plus one handoff.
   * Levels (sessions, channels, requests in flight, raw connections open) are
   * this process's own. Anything that is not a finite count is ignored.
   */
  carryOver(from: unknown): void {
    if (typeof from !== "object" || from === null) return;
    const old = from as Record<string, unknown>;
    for (const k of CARRIED) {
      const v = old[k];
      if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) this[k] += v;
    }
    this.handoffs++;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(Object.entries(this)) as Record<string, number>;
  }
}
