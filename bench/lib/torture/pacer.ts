/**
 * A shared rate limit for attack loops: `take()` resolves when one more
 * action is allowed at `perSecond`, or false once `close()` was called.
 * Refills every 10 ms; waiters are served in order.
 */
export class Pacer {
  #tokens: number;
  #perTick: number;
  #burst: number;
  #waiters: ((ok: boolean) => void)[] = [];
  #timer: ReturnType<typeof setInterval>;

  constructor(perSecond: number) {
    this.#perTick = perSecond / 100;
    this.#burst = Math.max(1, perSecond / 10);
    this.#tokens = this.#burst;
    this.#timer = setInterval(() => this.#refill(), 10);
  }

  take(): Promise<boolean> {
    if (this.#waiters.length === 0 && this.#tokens >= 1) {
      this.#tokens--;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Releases every waiter with false and stops the refill. */
  close(): void {
    clearInterval(this.#timer);
    for (const w of this.#waiters.splice(0)) w(false);
  }

  #refill(): void {
    this.#tokens = Math.min(this.#burst, this.#tokens + this.#perTick);
    while (this.#tokens >= 1 && this.#waiters.length > 0) {
      this.#tokens--;
      this.#waiters.shift()!(true);
    }
  }
}
