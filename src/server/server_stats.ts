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

  snapshot(): Record<string, number> {
    return Object.fromEntries(Object.entries(this)) as Record<string, number>;
  }
}
