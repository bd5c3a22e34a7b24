import type { ChildProcess } from "node:child_process";
import { codeShaped, type ErrorCode } from "../errors.ts";
import { isMessage, type NewToOld } from "./handoff_protocol.ts";

/** The messages of the new program's steps (handoff_protocol.ts) that this side waits for. */
const STEPS = new Set<string>(["transfer-request", "accepting", "start-failed"]);

/**
 * The old side's view of the new process during a handoff: waits for its
 * next handoff message, its exit, the timeout, or a cancellation, whichever
 * comes first.
 */
export class ChildSteps {
  #child: ChildProcess;
  #timeoutMs: number;
  #messages: NewToOld[] = [];
  #exit: string | null = null;
  /** The exit was not a clean one (code 0): a crash, a kill. */
  #crashed = false;
  #taken = new Map<string, NewToOld>();
  #cancelled: string | null = null;
  #wake: (() => void) | null = null;

  constructor(child: ChildProcess, timeoutMs: number) {
    this.#child = child;
    this.#timeoutMs = timeoutMs;
    child.on("message", this.#onMessage);
    child.on("exit", this.#onExit);
    child.on("error", this.#onError);
  }

  /**
   * Kept: the first of each step's messages, nothing else. A new program that
   * sends junk or the same message again and again grows this process by nothing.
   */
  #onMessage = (m: unknown): void => {
    const t = (m as { t?: unknown } | null)?.t;
    if (typeof t !== "string" || !STEPS.has(t) || this.#taken.has(t as NewToOld["t"]) || this.#messages.some((x) => x.t === t)) return;
    this.#messages.push(m as NewToOld);
    this.#wake?.();
  };
  #onExit = (code: number | null, signal: string | null): void => {
    if (this.#exit === null) this.#crashed = signal !== null || code !== 0;
    this.#exit ??= signal ? `was killed by ${signal}` : `exited with code ${code}`;
    this.#wake?.();
  };
  #onError = (err: Error): void => {
    this.#exit ??= `could not be started (${(err as NodeJS.ErrnoException).code ?? err.message})`;
    this.#wake?.();
  };

  /** True once the new process said it cannot start (it exits by itself). */
  get startFailed(): boolean {
    return this.#messages.some((m) => isMessage(m, "start-failed"));
  }

  /** The error code the new process gave with its start-failed (PERILINK_APP_NOT_READY…), if one of ours. */
  get failedCode(): ErrorCode | undefined {
    const code = (this.#messages.find((m) => isMessage(m, "start-failed")) as { code?: unknown } | undefined)?.code;
    return codeShaped(code) ? code : undefined;
  }

  /** Set once `cancel()` was called: why. */
  get cancelled(): string | null {
    return this.#cancelled;
  }

  /** Ends the current and every later wait at once (`next()` answers with `why`). */
  cancel(why: string): void {
    this.#cancelled ??= why;
    this.#wake?.();
  }

  /** true when the message came; else why not ("exited with code 1", "was not … within N ms", the cancellation). */
  async next(t: NewToOld["t"]): Promise<true | string> {
    const deadline = Date.now() + this.#timeoutMs;
    const what = t === "accepting" ? "accepting" : "ready";
    for (;;) {
      if (this.#cancelled) return this.#cancelled;
      const i = this.#messages.findIndex((m) => isMessage(m, t));
      if (i >= 0) {
        this.#taken.set(t, this.#messages.splice(i, 1)[0]!);
        return true;
      }
      const failed = this.#messages.find((m) => isMessage(m, "start-failed")) as { why?: unknown } | undefined;
      if (failed) return `could not start: ${String(failed.why).slice(0, 1000)}`;
      if (this.#exit) return `${this.#exit} before it was ${what} (see its log lines)`;
      const left = deadline - Date.now();
      if (left <= 0) return `was not ${what} within ${this.#timeoutMs} ms and was killed`;
      await this.#nap(left);
    }
  }

  /** The message of type `t` that `next(t)` last returned true for. */
  taken<T extends NewToOld["t"]>(t: T): Extract<NewToOld, { t: T }> | undefined {
    return this.#taken.get(t) as Extract<NewToOld, { t: T }> | undefined;
  }

  /**
   * Waits `ms` for the child to crash (exit other than with code 0, or be
   * killed): how it ended if it did; null once `ms` passed, the child exited
   * cleanly (stopped on purpose), or on `cancel()`.
   */
  async crashedWithin(ms: number): Promise<string | null> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.#cancelled) return null;
      if (this.#exit) return this.#crashed ? this.#exit : null;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await this.#nap(left);
    }
  }

  /** Sleeps `ms`, or until a message, the exit or a cancellation wakes it. */
  #nap(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
    });
  }

  /** Resolves once the child has exited (at once if it has), or after `maxMs`. */
  exited(maxMs: number): Promise<void> {
    if (this.#exit !== null || this.#child.exitCode !== null || this.#child.signalCode !== null) return Promise.resolve();
    return new Promise((r) => {
      const done = (): void => {
        clearTimeout(t);
        this.#child.off("exit", done);
        r();
      };
      const t = setTimeout(done, maxMs);
      this.#child.once("exit", done);
    });
  }

  dispose(): void {
    this.#child.off("message", this.#onMessage);
    this.#child.off("exit", this.#onExit);
    this.#child.off("error", this.#onError);
  }
}
