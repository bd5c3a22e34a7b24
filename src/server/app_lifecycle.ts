import { AppError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { AppHooks } from "./app.ts";
import { AppHandoff } from "./app_handoff.ts";

/**
 * Runs an app's `ready()` and `drain()` hooks (docs/apps.md, "Upgrades")
 * with their bounds, around the handoff between generations: before
 * `ready()` the previous generation's state is fetched; once it has
 * settled, the descriptors the app did not take are closed.
 */
export class AppLifecycle {
  readonly handoff: AppHandoff;
  #name: string;
  #hooks: AppHooks;
  #log: Logger;

  constructor(name: string, hooks: AppHooks, handoff: AppHandoff, log: Logger) {
    this.#name = name;
    this.#hooks = hooks;
    this.handoff = handoff;
    this.#log = log;
  }

  /** Before the process accepts: throws `AppError` PERILINK_APP_NOT_READY when `ready()` rejects or outlives `timeoutMs`. */
  async ready(timeoutMs: number): Promise<void> {
    const started = Date.now();
    const hook = this.#hooks.ready;
    try {
      if (!hook) return; // nothing can take what was passed, nor read the state
      await this.handoff.receive();
      const outcome = await within(() => hook(this.handoff), timeoutMs);
      if (outcome === "late") {
        throw new AppError(`Cannot start app ${this.#name}: its ready() did not settle within ${timeoutMs} ms (limits.readyTimeoutMs)`, { code: NOT_READY });
      }
      if (outcome) {
        const why = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
        throw new AppError(`Cannot start app ${this.#name}: its ready() failed: ${why}`, { cause: outcome.error, code: NOT_READY });
      }
      this.#log.info("app_ready", { app: this.#name, ms: Date.now() - started });
    } finally {
      const closed = this.handoff.closeUntaken();
      if (closed.length > 0) this.#log.info("handoff_untaken_closed", { names: closed });
    }
  }

  /** Alongside the drain of the requests: `drain()`, bounded by `timeoutMs`; a failure is logged, never thrown. */
  async drain(timeoutMs: number, handedOver: boolean): Promise<void> {
    this.handoff.markHandedOver(handedOver);
    const hook = this.#hooks.drain;
    if (!hook) return;
    const outcome = await within(() => hook(this.handoff), timeoutMs);
    if (outcome === "late") this.#log.warn("app_drain_timeout", { app: this.#name, ms: timeoutMs });
    else if (outcome) this.#log.warn("app_drain_failed", { app: this.#name, error: outcome.error });
  }
}

const NOT_READY = "PERILINK_APP_NOT_READY";

/** Runs `fn` and waits at most `ms` for it to settle: undefined when it resolved. */
function within(fn: () => unknown, ms: number): Promise<"late" | { error: unknown } | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    Promise.resolve()
      .then(fn)
      .then(
        () => undefined,
        (error: unknown) => ({ error }),
      ),
    new Promise<"late">((resolve) => (timer = setTimeout(resolve, ms, "late"))),
  ]).finally(() => clearTimeout(timer));
}
