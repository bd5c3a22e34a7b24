/**
 * Ends an attack's loops: `stopped` turns true at `stop()` or at the
 * deadline, whichever comes first, and every `pause()` under way returns at once.
 */
export class Stopper {
  stopped = false;
  #wakers = new Set<() => void>();
  #timer: ReturnType<typeof setTimeout>;

  constructor(deadline: number) {
    this.#timer = setTimeout(() => this.stop(), Math.max(0, deadline - Date.now()));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.#timer);
    for (const wake of this.#wakers) wake();
    this.#wakers.clear();
  }

  /** Waits `ms`, or less if the attack stops meanwhile. */
  pause(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#wakers.add(wake);
    });
  }
}
