import type { Logger } from "../logger.ts";
import type { AppStates } from "../handoff/handoff_protocol.ts";
import { MAX_HANDOFF_STATE_BYTES } from "../server/app_handoff.ts";
import type { ManagerToWorker } from "./group_protocol.ts";
import { WORKER_START_TIMEOUT_MS, type Worker } from "./worker_pool.ts";

/** How long an old group's service process has to answer for its app's state. */
export const STATE_ASK_MS = 5000;

/**
 * A group's side of its apps' states at an upgrade (docs/apps.md, "With
 * service processes"), both ways:
 *
 * - as the new group: the old generation's states, asked once (when the
 *   first service process wants its slot's), each slot's given to the first
 *   process of this group in that slot, and only to processes started while
 *   the group starts (until the handover, or until a rolling start is over):
 *   a process started later (a restart, a process added under load) starts
 *   without, not from a state left over from the upgrade;
 * - as the old group: what each ready service process's app put, asked of
 *   them all at once; a slot whose process this group had not started yet
 *   passes on what it inherited itself.
 */
export class GroupStates {
  #inherit: (() => Promise<AppStates>) | null;
  #inherited: Promise<AppStates> | null = null;
  #open = true;
  /** Slots whose process was told to ask, and those whose state went to a process already. */
  #offered = new Set<number>();
  #given = new Set<number>();
  /** Service processes asked for their app's state, and who waits for each answer. */
  #asked = new Map<Worker, Set<(text: string | null) => void>>();
  #log: Logger;
  #askMs: number;

  constructor(inherit: (() => Promise<AppStates>) | null, log: Logger, askMs = STATE_ASK_MS) {
    this.#inherit = inherit;
    this.#log = log;
    this.#askMs = askMs;
  }

  /**
   * Whether a process started in `slot` now has a state to ask for (its
   * environment tells it to ask): while the group starts, and its slot's
   * state was not given yet.
   */
  offer(slot: number): boolean {
    if (this.#inherit === null || !this.#open || this.#given.has(slot)) return false;
    this.#offered.add(slot);
    return true;
  }

  /**
   * The group has started: no more offers. Those made still hold until the
   * processes could have asked (they ask before they are ready, within
   * WORKER_START_TIMEOUT_MS); then what was not given is dropped.
   */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    const drop = setTimeout(() => {
      this.#inherit = null;
      this.#inherited = null;
      this.#offered.clear();
    }, WORKER_START_TIMEOUT_MS);
    drop.unref?.();
  }

  /** Answers a service process's `state-request`: its slot's inherited state, once, if it was offered one. */
  async answer(w: Worker): Promise<void> {
    const slot = w.slot;
    const mine = this.#inherit !== null && this.#offered.delete(slot);
    if (mine) this.#given.add(slot);
    const text = mine ? await this.#slotState(slot) : null;
    if (!w.child.connected) {
      if (mine) this.#regive(slot); // never reached it: the next process in the slot may get it
      return;
    }
    w.child.send({ t: "state", text } satisfies ManagerToWorker, (err: Error | null) => err && mine && this.#regive(slot));
  }

  /** A slot's state that did not reach its process: offered again while the group starts. */
  #regive(slot: number): void {
    this.#given.delete(slot);
  }

  /** A service process's answer to our `state-request`. */
  answered(w: Worker, text: unknown): void {
    const waiters = this.#asked.get(w);
    this.#asked.delete(w);
    const ok = typeof text === "string" && Buffer.byteLength(text) <= MAX_HANDOFF_STATE_BYTES ? text : null;
    if (typeof text === "string" && ok === null) this.#log.warn("app_state_refused", { slot: w.slot, workerPid: w.pid, why: `over ${MAX_HANDOFF_STATE_BYTES} bytes` });
    for (const f of waiters ?? []) f(ok);
  }

  /** A service process exited: nothing more comes from it. */
  exited(w: Worker): void {
    this.answered(w, null);
  }

  /** For the next generation: each slot's state, from its ready process (at most STATE_ASK_MS), else what this group inherited for it and did not give. */
  async collect(workers: readonly Worker[]): Promise<AppStates> {
    const bySlot = new Map<number, Worker>();
    for (const w of workers) if (w.state === "ready" && w.child.connected) bySlot.set(w.slot, w);
    const inherited = this.#open && this.#inherited ? await this.#inherited : null;
    const slots = Math.max(0, ...[...bySlot.keys()].map((s) => s + 1), inherited?.states?.length ?? 0);
    const states: (string | null)[] = Array.from({ length: slots }, (_, slot) => (inherited && !this.#given.has(slot) ? this.#pick(inherited, slot) : null));
    await Promise.all([...bySlot].map(async ([slot, w]) => (states[slot] = await this.#ask(w))));
    return { state: states[0] ?? null, states };
  }

  #ask(w: Worker): Promise<string | null> {
    return new Promise((resolve) => {
      let waiters = this.#asked.get(w);
      if (!waiters) this.#asked.set(w, (waiters = new Set()));
      const done = (text: string | null): void => {
        clearTimeout(timer);
        waiters!.delete(done);
        resolve(text);
      };
      const timer = setTimeout(() => {
        this.#log.warn("app_state_unanswered", { slot: w.slot, workerPid: w.pid, ms: this.#askMs, note: "its slot's next process starts without a state" });
        done(null);
      }, this.#askMs);
      waiters.add(done);
      w.child.send({ t: "state-request" } satisfies ManagerToWorker, (err: Error | null) => err && done(null));
    });
  }

  async #slotState(slot: number): Promise<string | null> {
    this.#inherited ??= this.#inherit!().catch((err: unknown) => {
      this.#log.warn("app_state_failed", { error: err });
      return { state: null };
    });
    return this.#pick(await this.#inherited, slot);
  }

  /** A slot's state in what an old generation handed on: an old group's by slot, an old single process's for every slot. */
  #pick(got: AppStates, slot: number): string | null {
    return got.states ? (got.states[slot] ?? null) : got.state;
  }
}
