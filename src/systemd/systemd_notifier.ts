import type { Logger } from "../logger.ts";
import { monotonicUsec, systemdNotifySender, type NotifySender } from "../runtime/notify_sender.ts";
import type { ServerEvents } from "../server/server_events.ts";

/** The part of a server the notifier reads. */
export interface NotifiedServer {
  readonly generation: number;
  readonly serverId: string;
  endpoints(): unknown[];
}

/** What the notifier learns from the environment systemd gave the service. */
export interface NotifyEnv {
  socket: string;
  /** WATCHDOG_USEC, when the watchdog is meant for this process. */
  watchdogUsec: number | null;
}

/**
 * Reads NOTIFY_SOCKET and the watchdog variables. The watchdog is this
 * process's when WATCHDOG_PID is unset or names it, or when it names the
 * parent of a process started by an upgrade; WATCHDOG_PID is then set to
 * this pid, so the next upgrade's process finds its parent there too.
 * NOTIFY_SOCKET stays set: the process an upgrade starts notifies as well.
 */
export function readNotifyEnv(env: NodeJS.ProcessEnv = process.env, pid = process.pid, ppid = process.ppid, upgraded = false): NotifyEnv | null {
  const socket = env.NOTIFY_SOCKET;
  if (!socket) return null;
  const usec = Number(env.WATCHDOG_USEC ?? "");
  const forPid = env.WATCHDOG_PID;
  const mine = forPid === undefined || Number(forPid) === pid || (upgraded && Number(forPid) === ppid);
  const watchdogUsec = Number.isInteger(usec) && usec > 0 && mine ? usec : null;
  if (watchdogUsec !== null) env.WATCHDOG_PID = String(pid);
  return { socket, watchdogUsec };
}

/** How often a long drain asks systemd for more time, and the first time it does. */
export const EXTEND_FIRST_MS = 1000;
export const EXTEND_EVERY_MS = 10_000;
/** Time beyond the drain's own deadline that systemd is asked to wait. */
const EXTEND_GRACE_MS = 5000;

/**
 * Tells systemd (sd_notify) how the server is doing (S7):
 *
 *   fresh start, accepting     READY=1, STATUS=…
 *   upgrade begins             RELOADING=1, MONOTONIC_USEC=…, STATUS=…
 *   new process accepts        MAINPID=<new pid>, READY=1, STATUS=…  (one datagram, before this one exits)
 *   upgrade fails              READY=1, STATUS=…  (this process still serves)
 *   drain on stop              STOPPING=1, STATUS=…; while it runs, EXTEND_TIMEOUT_USEC=…
 *   every WATCHDOG_USEC / 2    WATCHDOG=1, until it hands over or exits (the upgraded process re-arms it)
 *
 * A process started by an upgrade sends no READY=1 of its own: the old one
 * names it MAINPID once it accepts. After handing over, a process is silent.
 */
export class SystemdNotifier implements ServerEvents {
  #sender: NotifySender;
  #log: Logger;
  #server: () => NotifiedServer;
  #watchdog: ReturnType<typeof setInterval> | null = null;
  #extend: ReturnType<typeof setTimeout> | null = null;
  #handedOver = false;
  #last: Promise<void> = Promise.resolve();

  /** `server` is read only once it has started (the notifier is created before it). */
  constructor(env: NotifyEnv, server: () => NotifiedServer, log: Logger, sender?: NotifySender) {
    this.#server = server;
    this.#log = log;
    let warned = false;
    this.#sender =
      sender ??
      systemdNotifySender(env.socket, (err) => {
        if (warned) return;
        warned = true;
        log.warn("notify_failed", { error: err, note: "systemd-notify (package systemd) sends the notifications; without it systemd hears nothing" });
      });
    if (env.watchdogUsec !== null) {
      const every = Math.max(1, Math.floor(env.watchdogUsec / 2000));
      this.#watchdog = setInterval(() => void this.#send(["WATCHDOG=1"]), every);
      this.#watchdog.unref?.();
    }
  }

  /** The server accepts. A fresh start is ready; an upgraded process waits for the old one to name it. */
  accepting(): void {
    if (this.#server().generation > 1) return;
    void this.#send(["READY=1", `STATUS=${this.#serving()}`]);
  }

  upgradeStarted(info: { generation: number }): void {
    void this.#send(["RELOADING=1", `MONOTONIC_USEC=${monotonicUsec()}`, `STATUS=Upgrading: starting generation ${info.generation}`]);
  }

  upgradeFinished(result: { generation: number; pid: number }): void {
    this.#handedOver = true;
    this.#stopWatchdog();
    void this.#send(["MAINPID=" + result.pid, "READY=1", `STATUS=Upgraded: generation ${result.generation} (pid ${result.pid}) serves; generation ${this.#server().generation} drains`], true);
  }

  upgradeFailed(err: Error): void {
    void this.#send(["READY=1", `STATUS=Upgrade failed: ${oneLine(err.message)}. ${this.#serving()}`]);
  }

  drainStarted(info: { sessions: number; inflight: number; timeoutMs: number; handedOver: boolean }): void {
    if (info.handedOver || this.#handedOver) return;
    // The watchdog keeps going while the drain runs: a drain that hangs is a hang.
    const deadline = Date.now() + info.timeoutMs;
    void this.#send(["STOPPING=1", `STATUS=Stopping: finishing ${info.inflight} request(s) on ${info.sessions} connection(s), for up to ${Math.ceil(info.timeoutMs / 1000)} s`]);
    const extend = (): void => {
      const usec = (Math.max(0, deadline - Date.now()) + EXTEND_GRACE_MS) * 1000;
      void this.#send([`EXTEND_TIMEOUT_USEC=${usec}`]);
      this.#extend = setTimeout(extend, EXTEND_EVERY_MS);
      this.#extend.unref?.();
    };
    this.#extend = setTimeout(extend, EXTEND_FIRST_MS);
    this.#extend.unref?.();
  }

  drainFinished(): void {
    if (this.#extend) clearTimeout(this.#extend);
    this.#extend = null;
  }

  /** Resolves once every message sent so far has been taken by systemd. */
  flush(): Promise<void> {
    return this.#last;
  }

  close(): void {
    this.#stopWatchdog();
    this.drainFinished();
  }

  #stopWatchdog(): void {
    if (this.#watchdog) clearInterval(this.#watchdog);
    this.#watchdog = null;
  }

  #send(lines: string[], evenHandedOver = false): Promise<void> {
    if (this.#handedOver && !evenHandedOver) return this.#last;
    this.#log.debug("notify", { message: lines.join(" ") });
    this.#last = this.#sender.send(lines);
    return this.#last;
  }

  #serving(): string {
    const s = this.#server();
    return `Serving ${s.serverId} on ${s.endpoints().length} address(es), generation ${s.generation}, pid ${process.pid}`;
  }
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").slice(0, 200);
}
