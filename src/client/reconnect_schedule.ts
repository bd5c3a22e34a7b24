import { TARGET } from "../target.ts";
import { worthRetrying } from "./link_lifecycle.ts";

/** The first wait before trying an unreachable server again. */
const FIRST_MS = 100;

/**
 * When to try a server again whose every address was down, or whose
 * sessions die young: one schedule per server, however many of its links
 * wait — after 100 ms, then twice as long each time up to the target's
 * reconnectMaxMs, each wait drawn between half and all of that (jitter, so
 * that many hosts do not come back in step). A try is `attempt()`; when it
 * succeeds `up()` runs (the links take the session), when it fails with
 * something a later try may not meet the schedule goes on, else `gaveUp()`.
 * The timer keeps no process alive.
 */
export class ReconnectSchedule {
  #timer: ReturnType<typeof setTimeout> | null = null;
  #failures = 0;
  #attempt: () => Promise<unknown>;
  #up: () => void;
  #gaveUp: () => void;
  #wanted: () => boolean;

  constructor(parts: { attempt: () => Promise<unknown>; up: () => void; gaveUp: () => void; wanted: () => boolean }) {
    this.#attempt = parts.attempt;
    this.#up = parts.up;
    this.#gaveUp = parts.gaveUp;
    this.#wanted = parts.wanted;
  }

  /** Schedules the next try (one at a time). */
  later(): void {
    if (this.#timer !== null || !this.#wanted()) return;
    const bound = Math.min(TARGET.client.reconnectMaxMs, FIRST_MS * 2 ** Math.min(this.#failures, 20));
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (!this.#wanted()) return;
      this.#attempt().then(
        () => this.#up(), // the count stays: only a session that lives on resets it (a young death counts as a failure)
        (err: unknown) => {
          this.#failures++;
          if (worthRetrying(err)) this.later();
          else this.#gaveUp();
        },
      );
    }, bound / 2 + Math.random() * (bound / 2));
    this.#timer.unref?.();
  }

  /** A session died young (it lasted less than a few seconds): a failed try; the next comes later. */
  died(): void {
    this.#failures++;
    this.later();
  }

  /** The server was well for a while: the next outage starts from the first wait again. */
  reset(): void {
    this.#failures = 0;
  }

  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
