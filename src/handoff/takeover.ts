import { readFileSync } from "node:fs";
import type { Logger } from "../logger.ts";
import type { AcceptSemaphore } from "./accept_semaphore.ts";
import {
  APP_STATE_ENV,
  DEFAULT_UPGRADE_TIMEOUT_MS,
  DRAINING_PIDS_ENV,
  GENERATION_ENV,
  HANDOFF_ENV,
  HANDOFF_TIMEOUT_ENV,
  PORTS_ENV,
  type AppStates,
  type DrainingGeneration,
  type HandoffMode,
  isMessage,
  type NewToOld,
  type OldToNew,
} from "./handoff_protocol.ts";
import type { StartupTakeover } from "../server/server_handoff.ts";
import { MAX_WORKERS } from "../server/config.ts";

/** An old group's states past the most slots a group has are not kept. */
const MAX_SLOTS = MAX_WORKERS;

/** The part of `process` the new side talks to its parent through (an injectable seam). */
export type ParentChannel = Pick<NodeJS.Process, "send" | "on" | "connected" | "channel"> & Partial<Pick<NodeJS.Process, "off">>;

/** What a process learns from its environment about how it was started. */
export interface StartContext {
  /** How a perilink parent waiting on the IPC channel hands over; null for a fresh start. */
  handoff: HandoffMode | null;
  generation: number;
  timeoutMs: number;
  /** Ports the old process's kernel chose for `…:0` entries, by entry text. */
  ports: Record<string, number>;
  /** The parent answers a request for the app's state (handoff_protocol.ts). */
  appState: boolean;
  /** The old group's service processes, which drain while this process's group starts (`--workers`). */
  drainingPids: number[];
}

export function readStartContext(env: NodeJS.ProcessEnv = process.env, channel: ParentChannel = process): StartContext {
  const mode = env[HANDOFF_ENV];
  const handoff = (mode === "inherit" || mode === "reuseport") && typeof channel.send === "function" ? mode : null;
  const generation = Number(env[GENERATION_ENV] ?? "1");
  const timeoutMs = Number(env[HANDOFF_TIMEOUT_ENV] ?? DEFAULT_UPGRADE_TIMEOUT_MS);
  const ports: Record<string, number> = {};
  try {
    for (const [k, v] of Object.entries(JSON.parse(env[PORTS_ENV] ?? "{}") as Record<string, unknown>)) {
      if (Number.isInteger(v) && (v as number) > 0 && (v as number) < 65536) ports[k] = v as number;
    }
  } catch {
    // not from a perilink parent: ignore
  }
  const appState = env[APP_STATE_ENV] === "1";
  const drainingPids = (env[DRAINING_PIDS_ENV] ?? "").split(",").map(Number).filter((n) => Number.isSafeInteger(n) && n > 1 && n !== process.pid).slice(0, 1024);
  delete env[DRAINING_PIDS_ENV];
  delete env[APP_STATE_ENV];
  delete env[PORTS_ENV];
  delete env[HANDOFF_ENV];
  delete env[GENERATION_ENV];
  delete env[HANDOFF_TIMEOUT_ENV];
  return {
    handoff,
    generation: Number.isInteger(generation) && generation > 0 ? generation : 1,
    timeoutMs: Number.isInteger(timeoutMs) && timeoutMs > 0 ? timeoutMs : DEFAULT_UPGRADE_TIMEOUT_MS,
    ports: handoff ? ports : {},
    appState: handoff !== null && appState,
    drainingPids: handoff ? drainingPids : [],
  };
}

/** The OS side effects of the new side of a handoff besides its parent channel (tests pass fakes). */
export interface TakeoverSeams {
  /** Whether process `pid` still runs (a zombie does not). */
  isAlive(pid: number): boolean;
}

/**
 * The new side of a seamless replacement (S4): once ready, asks the old
 * process for the service, waits for its answer (or its death: pipe EOF),
 * takes the accept semaphore, and only then starts accepting. Afterwards it
 * keeps the older generations' drain reports for `status`: each report from
 * the parent replaces the previous one (it carries the parent's whole view,
 * its own progress and the older generations it still hears from), and a
 * generation whose process has exited is never listed, whoever reported it.
 */
export class Takeover implements StartupTakeover {
  #channel: ParentChannel;
  #log: Logger;
  #timeoutMs: number;
  #seams: TakeoverSeams;
  #draining = new Map<number, DrainingGeneration>();
  #parentGone = false;
  #settled = false;

  /** The old process is past its probation (it reports its drain) or gone: an upgrade of this one cannot cross its rollback. */
  predecessorSettled(): boolean {
    return this.#settled || this.#parentGone;
  }
  #vouched: unknown = null;
  #counters: unknown = null;
  #lateCounters: ((final: unknown, atHandover: unknown) => void) | null = null;

  constructor(channel: ParentChannel, log: Logger, timeoutMs: number, seams: Partial<TakeoverSeams> = {}) {
    this.#channel = channel;
    this.#log = log;
    this.#timeoutMs = timeoutMs;
    this.#seams = { isAlive: pidAlive, ...seams };
  }

  /** The peers the old process vouched for (its transfer response; admission.ts checks them). */
  vouched(): unknown {
    return this.#vouched;
  }

  /** The old process's counters when it handed over (its transfer response; server_stats.ts checks them). */
  counters(): unknown {
    return this.#counters;
  }

  /** Called once with the old process's totals when it has drained: what it counted after the handover is the difference. */
  onDrainedCounters(listener: (final: unknown, atHandover: unknown) => void): void {
    this.#lateCounters = listener;
  }

  /**
   * Asks the old process for its app's state (docs/apps.md), just before
   * this process's app gets ready: JSON text, or null when it put none, the
   * parent does not answer such a request, or it does not answer in time.
   */
  async appState(askable: boolean): Promise<string | null> {
    return (await this.appStates(askable)).state;
  }

  /**
   * The same for a group (`--workers`): asked once, before the first of its
   * service processes gets ready; `states` holds an old group's by slot
   * (absent when the old generation was one process).
   */
  appStates(askable: boolean): Promise<AppStates> {
    const ch = this.#channel;
    if (!askable || ch.connected === false) return Promise.resolve({ state: null });
    return new Promise((resolve) => {
      const done = (states: AppStates): void => {
        clearTimeout(timer);
        ch.off?.("message", onMessage);
        ch.off?.("disconnect", onGone);
        resolve(states);
      };
      const onMessage = (m: unknown): void => {
        if (!isMessage<Extract<OldToNew, { t: "app-state" }>>(m, "app-state")) return;
        const text = (v: unknown): string | null => (typeof v === "string" ? v : null);
        done({ state: text(m.state), ...(Array.isArray(m.states) ? { states: m.states.slice(0, MAX_SLOTS).map(text) } : {}) });
      };
      const onGone = (): void => done({ state: null });
      const timer = setTimeout(() => {
        this.#log.warn("app_state_timeout", { ms: this.#timeoutMs });
        done({ state: null });
      }, this.#timeoutMs);
      ch.on("message", onMessage);
      ch.on("disconnect", onGone);
      this.#send({ t: "app-state-request" });
    });
  }

  /** Tells the old process why this one cannot start (it rolls back at once); resolves once sent, or after a second. */
  failed(why: string, code?: string): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, this.#channel.connected === false ? 0 : 1000);
      this.#send({ t: "start-failed", why, ...(code ? { code } : {}) }, undefined, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Older generations that are still draining (their processes run), oldest first. */
  draining(): DrainingGeneration[] {
    const out: DrainingGeneration[] = [];
    for (const [generation, g] of this.#draining) {
      if (this.#seams.isAlive(g.pid)) out.push(g);
      else this.#draining.delete(generation);
    }
    return out.sort((a, b) => a.generation - b.generation);
  }

  /**
   * Runs the takeover; `activate` starts accepting on the adopted sockets.
   * Throws when the old process neither answers nor dies within the timeout.
   * The wait for the accept semaphore begins with the transfer request, not
   * after the answer: it ends when the old process releases the semaphore, so
   * the gap in which no process accepts holds no process start (the flock
   * command) of ours.
   */
  async run(semaphore: (Pick<AcceptSemaphore, "acquire"> & Partial<Pick<AcceptSemaphore, "release">>) | null, activate: () => Promise<void>, generation: number): Promise<void> {
    const ch = this.#channel;
    let answered = false;
    let wake: (() => void) | null = null;
    const onMessage = (m: unknown, handle?: unknown): void => {
      if (typeof m !== "object" || m === null) return;
      const msg = m as OldToNew;
      if (msg.t === "park") {
        // Back to the old process, which keeps it unwatched; our copy closes once it is on its way.
        const h = handle as { close?: () => void } | undefined;
        if (h) this.#send({ t: "parked" }, h, () => h.close?.());
      } else if (msg.t === "transfer-response") {
        answered = true;
        this.#vouched = msg.vouched ?? null;
        this.#counters = msg.counters ?? null;
        wake?.();
      } else if (msg.t === "draining") {
        this.#settled = true; // sent once its probation passed
        this.#draining = new Map([msg.report, ...msg.older].map((g) => [g.generation, g]));
      } else if (msg.t === "drained") {
        this.#draining.delete(msg.generation);
        if (msg.counters !== undefined && answered) this.#lateCounters?.(msg.counters, this.#counters);
      }
    };
    const onDisconnect = (): void => {
      // Older generations the parent reported may still be draining: they stay listed while they run.
      this.#parentGone = true;
      wake?.();
    };
    ch.on("message", onMessage);
    ch.on("disconnect", onDisconnect);
    this.#send({ t: "transfer-request", park: true });
    // Started after the request, so the old process stops accepting while the wait is set up.
    const taking = semaphore ? semaphore.acquire(this.#timeoutMs).then(() => null, (err: unknown) => ({ err })) : Promise.resolve(null);
    const deadline = Date.now() + this.#timeoutMs;
    while (!answered && !this.#parentGone && ch.connected !== false) {
      const left = deadline - Date.now();
      if (left <= 0) {
        void taking.then((failed) => failed === null && semaphore?.release?.());
        throw new Error(`Cannot take over: the running process did not answer the transfer request within ${this.#timeoutMs} ms`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(t);
          wake = null;
          resolve();
        };
      });
    }
    if (!answered) this.#log.warn("takeover_parent_gone", { note: "the old process died during the handoff; taking over" });
    const failed = await taking;
    if (failed) throw failed.err;
    await activate();
    this.#send({ t: "accepting", pid: process.pid, generation });
    // The pipe must not keep this process alive, and its end only means the old one exited.
    ch.channel?.unref();
  }

  #send(msg: NewToOld, handle?: object, sent: () => void = () => {}): void {
    if (this.#channel.connected === false || !this.#channel.send) return;
    try {
      if (handle) this.#channel.send(msg, handle as never, sent);
      else this.#channel.send(msg, sent);
    } catch {
      // the parent is gone: the disconnect handler takes it from here
    }
  }
}

/**
 * `kill(pid, 0)`, and on Linux the process state: a zombie has exited. With
 * `parent`, also whether the process is still that one's child (on Linux; a
 * pid reused by another program is not).
 */
export function pidAlive(pid: number, parent?: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const at = stat.lastIndexOf(")") + 2;
    return stat[at] !== "Z" && (parent === undefined || Number(stat.slice(at).split(" ")[1]) === parent);
  } catch {
    return true; // no procfs: kill(0) is all we know
  }
}
