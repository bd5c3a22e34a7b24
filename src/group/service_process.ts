import net from "node:net";
import type { Logger } from "../logger.ts";
import { peerKey } from "../server/peer_key.ts";
import type { PerilinkServer } from "../server/server.ts";
import { AppHandoff } from "../server/app_handoff.ts";
import { isRawConnection, socketOf } from "../runtime/raw_connections.ts";
import { STATS_INTERVAL_MS, WORKER_STATE_ENV, type ManagerToWorker, type WorkerToManager } from "./group_protocol.ts";

/** The part of `process` a service process talks to its manager through (an injectable seam). */
export type ManagerChannel = Pick<NodeJS.Process, "send" | "on" | "off" | "connected">;

/**
 * The service process's side of a group (S5): serves the connections its
 * manager passes it (manager dispatch) or accepts while it holds the accept
 * semaphore (semaphore dispatch), reports its counters, answers for the
 * state its app put (`handoff`) when an upgrade asks, and drains when
 * told. Resolves once it has drained: time to exit.
 */
export function serveForManager(
  server: PerilinkServer,
  log: Logger,
  channel: ManagerChannel = process,
  handoff: Pick<AppHandoff, "outgoingState" | "markHandedOver"> | null = null,
): Promise<void> {
  let closed = 0;
  let closedPeers: string[] = [];
  let flushing = false;
  // Semaphore dispatch: one turn at the accept semaphore.
  let handles: (object | undefined)[] = [];
  let turn: net.Server[] | null = null;
  let accepted = 0;
  const send = (msg: WorkerToManager, handle?: unknown, sent: () => void = () => {}): void => {
    if (channel.connected === false || !channel.send) return;
    try {
      channel.send(msg, handle as net.Server | undefined, {}, sent);
    } catch {
      // the manager is gone: the disconnect handler ends this process
    }
  };
  const flushClosed = (): void => {
    // The manager counts a turn's connections when it hears `released`: their closes come after it.
    if (closed === 0 || turn) return;
    send({ t: "closed", n: closed, peers: closedPeers });
    closed = 0;
    closedPeers = [];
  };
  const onClose = (): void => {
    closed++;
    schedule();
  };
  const schedule = (): void => {
    if (flushing) return;
    flushing = true;
    setImmediate(() => {
      flushing = false;
      flushClosed();
    });
  };
  /** `passedAs`: the key the manager counts a passed connection under (given back at its close). */
  const serve = (socket: net.Socket, passedAs?: string): void => {
    if (passedAs !== undefined) {
      const peer = passedAs;
      socket.once("close", () => {
        closedPeers.push(peer);
        onClose();
      });
    } else socket.once("close", onClose);
    server.serveConnection(socket);
  };

  const endTurn = (): void => {
    if (!turn) return;
    for (const s of turn) s.close();
    turn = null;
    handles = [];
    send({ t: "released", accepted });
    accepted = 0;
    flushClosed();
  };
  const lead = (): void => {
    const servers: net.Server[] = [];
    turn = servers;
    for (const h of handles) {
      const s = net.createServer({ noDelay: true, allowHalfOpen: server.allowHalfOpen }, (socket) => {
        accepted++;
        serve(socket);
        // Everything queued is accepted in this turn of the event loop; then the next one may accept.
        if (accepted === 1) setImmediate(endTurn);
      });
      s.on("error", (err) => log.error("listener_error", { transport: "tcp", error: err }));
      s.listen(h as net.Server);
      servers.push(s);
    }
  };

  const sendReport = (): void => {
    const st = server.status();
    send({ t: "stats", sessions: st.sessions, inflight: st.inflight, requests: st.counters.requests ?? 0, connections: st.sessions, counters: st.counters, latency: server.stats.latency.snapshot(), refusedBy: { ...server.stats.refusedBy } });
  };
  const report = setInterval(sendReport, STATS_INTERVAL_MS);
  report.unref?.();

  return new Promise<void>((resolve) => {
    const finish = (): void => {
      channel.off("message", onMessage);
      endTurn();
      // Reports go on while it drains, and a last one after: what it served meanwhile is counted.
      const done = (): void => {
        clearInterval(report);
        sendReport();
        resolve();
      };
      void server.drain().then(done, done);
    };
    const onMessage = (m: unknown, handle: unknown): void => {
      const msg = m as ManagerToWorker;
      switch (msg?.t) {
        case "conn": {
          // A bare handle (raw_connections.ts) becomes a Socket here; a socket from IPC is never half-open: a session answers what runs after the client's FIN.
          const socket = isRawConnection(handle) ? socketOf(handle, server.allowHalfOpen) : handle;
          if (socket instanceof net.Socket) {
            (socket as { allowHalfOpen: boolean }).allowHalfOpen = server.allowHalfOpen;
            serve(socket, msg.peer ?? peerKey(socket.remoteAddress ?? ""));
          }
          break;
        }
        case "lead":
          handles[msg.i] = handle as object;
          if (handles.filter(Boolean).length === msg.of) lead();
          break;
        case "revoke":
          if (turn) {
            endTurn();
          } else {
            // A turn that never started (not every descriptor came): close what did.
            for (const h of handles) (h as { close?: () => void } | undefined)?.close?.();
            handles = [];
            send({ t: "released", accepted: 0 });
          }
          break;
        case "bounce":
          // Back to the manager, which keeps it unwatched; our copy closes once it is on its way.
          send({ t: "bounced" }, handle, () => (handle as { close?: () => void })?.close?.());
          break;
        case "state-request":
          send({ t: "state", text: handoff?.outgoingState() ?? null });
          break;
        case "drain":
          if (msg.handedOver === true) handoff?.markHandedOver(true); // the app's drain() is told
          finish();
          break;
      }
    };
    channel.on("message", onMessage);
    // The manager died: finish what runs here, then exit (a new manager starts its own group).
    channel.on("disconnect", finish);
    send({ t: "ready" });
  });
}

/** How long a service process waits for its manager to answer for the state its slot inherits. */
export const STATE_WAIT_MS = 10_000;

const NO_DESCRIPTORS =
  "a service process (--workers) cannot pass descriptors to the next generation (Node.js passes only sockets between running processes); hand on a state with putState(), or serve with one process";

/**
 * A service process's handoff (docs/apps.md, "With service processes"): the
 * state its app puts goes to the process in its slot of the next group,
 * through the two managers; it starts from what its slot's process in the
 * old group put, when its manager said there is one to ask for
 * (WORKER_STATE_ENV: not at a fresh start, nor from a manager that would not
 * answer). Descriptors do not pass.
 */
export function serviceProcessHandoff(log: Logger, channel: ManagerChannel = process, env: NodeJS.ProcessEnv = process.env): AppHandoff {
  const ask = env[WORKER_STATE_ENV] === "1";
  delete env[WORKER_STATE_ENV]; // not for the processes the app starts
  if (!ask) return new AppHandoff({}, { fds: NO_DESCRIPTORS });
  const state = (): Promise<string | null> =>
    new Promise((resolve) => {
      if (channel.connected === false || !channel.send) return resolve(null);
      const done = (text: string | null): void => {
        clearTimeout(timer);
        channel.off("message", onMessage);
        channel.off("disconnect", onGone);
        resolve(text);
      };
      const onMessage = (m: unknown): void => {
        const msg = m as ManagerToWorker;
        if (msg?.t === "state") done(typeof msg.text === "string" ? msg.text : null);
      };
      const onGone = (): void => done(null);
      const timer = setTimeout(() => {
        log.warn("app_state_timeout", { ms: STATE_WAIT_MS, note: "the app starts without the state its slot had" });
        done(null);
      }, STATE_WAIT_MS);
      channel.on("message", onMessage);
      channel.on("disconnect", onGone);
      try {
        channel.send({ t: "state-request" } satisfies WorkerToManager, undefined, {}, (err: Error | null) => err && done(null));
      } catch {
        done(null);
      }
    });
  return new AppHandoff({ state }, { fds: NO_DESCRIPTORS });
}
